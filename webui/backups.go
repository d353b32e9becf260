package webui

import (
	"net/http"
	"time"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/server/auth"
	"github.com/incidentfox/orchestrator-edge/server/backups"
	"github.com/julienschmidt/httprouter"
)

// uiBackupAdmin checks admin:backup for an admin bound to no org, as the
// API does.
func (u *UI) uiBackupAdmin(w http.ResponseWriter, r *http.Request, se *uiSession) *auth.Admin {
	a := u.uiAdmin(w, r, se, auth.PermBackup, "backups")
	if a != nil && a.Identity.OrgID != "" {
		u.render(w, r, http.StatusForbidden, "notfound", page{Session: se, Nav: "backups",
			Error: "A backup holds every org's data: it needs an admin token bound to no org."})
		return nil
	}
	return a
}

func (u *UI) uiBackups(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if u.uiBackupAdmin(w, r, se) == nil {
		return
	}
	list, err := u.o.Backups.List()
	errText := ""
	if err != nil {
		errText = apperr.Message(err)
	}
	schedule, keep := u.o.Backups.Schedule()
	failure, failedAt := u.o.Backups.LastFailure()
	u.render(w, r, http.StatusOK, "backups", page{Session: se, Nav: "backups", Error: errText, Data: struct {
		Backups       []backups.Info
		Dir, Schedule string
		Keep          int
		Failure       string
		FailedAt      time.Time
	}{list, u.o.Backups.Dir(), schedule, keep, failure, failedAt}})
}

func (u *UI) uiBackupNow(w http.ResponseWriter, r *http.Request, se *uiSession) {
	a := u.uiBackupAdmin(w, r, se)
	if a == nil {
		return
	}
	if info, err := u.o.Backups.CreateFor(r.Context(), a.Actor); err != nil {
		u.setFlash(r, se, "No backup: "+apperr.Message(err))
	} else {
		u.setFlash(r, se, "Backup "+info.Name+" written and verified.")
	}
	http.Redirect(w, r, "/ui/backups", http.StatusSeeOther)
}

func (u *UI) uiBackupDownload(w http.ResponseWriter, r *http.Request, se *uiSession) {
	if u.uiBackupAdmin(w, r, se) == nil {
		return
	}
	name := httprouter.ParamsFromContext(r.Context()).ByName("name")
	if _, _, err := u.o.Backups.Find(name); err != nil {
		u.render(w, r, http.StatusNotFound, "notfound", page{Session: se, Nav: "backups", Error: "No such backup."})
		return
	}
	if err := u.o.Backups.Serve(w, name); err != nil {
		u.out.Error(w, r, err)
	}
}
