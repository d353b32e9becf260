package server

import (
	"net/http"
	"strconv"

	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/httpx"
	"github.com/incidentfox/orchestrator-edge/server/ids"
)

// listQuery checks what every list endpoint shares: the limit (1–200,
// default 50) and the org scope (orgScope).
func listQuery(r *http.Request, a *auth.Admin, org *string) (int, error) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return 0, httpx.QueryError("limit", "must be a whole number from 1 to 200")
		}
		limit = n
	}
	if *org != "" && !ids.Valid(*org) {
		return 0, httpx.QueryError("org_id", "must be 1-128 characters of [A-Za-z0-9._-]")
	}
	scoped, err := orgScope(a, *org)
	*org = scoped
	return limit, err
}

// orgScope is the one place that decides which org an admin reads: an
// org-bound admin reads its own org by default and may not name another; an
// unbound admin reads what it asked for ("" = every org). The API's lists
// and every page of the admin page ask here.
func orgScope(a *auth.Admin, asked string) (string, error) {
	if a.Identity.OrgID == "" {
		return asked, nil
	}
	if asked == "" {
		return a.Identity.OrgID, nil
	}
	if err := a.CanActOn(asked); err != nil {
		return "", err
	}
	return asked, nil
}

// decode reads a strict JSON request body (httpx.DecodeJSON) within the
// server's body cap.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any) error {
	return httpx.DecodeJSON(w, r, s.opts.MaxBodyBytes, dst)
}
