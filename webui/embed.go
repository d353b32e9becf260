// Package webui is the admin page (SPEC §9): server-rendered pages with no
// script at all, a server-side session per login, forms that redirect
// after POST, charts drawn as inline SVG. Its type UI is mounted by the
// server at /ui/; it reads and acts through the same domain packages as the
// JSON API (server/scoped, provision, schedules, agentrun, backups, the
// webhook door) and never imports the API. Templates and the stylesheet are
// embedded: no build step, nothing fetched at run time (it works
// air-gapped).
package webui

import (
	"embed"
	"html/template"
	"io/fs"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static is the tree served under /ui/static/.
func Static() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}

// Templates parses every page with the shared layout. Each page template
// defines "title" and "content"; funcs are the helpers the pages call.
func Templates(funcs template.FuncMap) (map[string]*template.Template, error) {
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := p[len("templates/") : len(p)-len(".html")]
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", p)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}
