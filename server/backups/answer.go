package backups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/incidentfox/orchestrator-edge/server/apperr"
	"github.com/incidentfox/orchestrator-edge/store"
)

// What the admin API and the admin page both do with backups: one manual
// snapshot for an admin, one download, and the errors in the product's
// vocabulary.

// Problem maps the manager's errors to the product's vocabulary.
func Problem(err error) error {
	switch {
	case errors.Is(err, ErrInProgress):
		return apperr.Wrap(err, apperr.Conflict, "backup_in_progress", "a backup is already running; try again when it is done")
	case errors.Is(err, store.ErrNoSnapshots):
		return apperr.Wrap(err, apperr.Conflict, "backups_unavailable", "%s", store.ErrNoSnapshots.Error())
	case errors.Is(err, ErrInsufficientStorage):
		return apperr.Wrap(err, apperr.InsufficientStorage, "insufficient_storage", "%s", err.Error())
	case errors.Is(err, ErrNotFound):
		return apperr.Wrap(err, apperr.NotFound, "backup_not_found", "no such backup")
	}
	return err
}

// CreateFor takes a manual snapshot an admin asked for, logged with the
// actor; it finishes even if the asking request goes away.
func (m *Manager) CreateFor(ctx context.Context, actor string) (Info, error) {
	info, err := m.Create(context.WithoutCancel(ctx), Manual)
	if err == nil {
		m.log.Info("backup taken", "name", info.Name, "actor", actor)
	}
	return info, Problem(err)
}

// Serve streams a snapshot as a download (with its size and SHA-256), or
// returns why it cannot (Problem's vocabulary) before writing anything.
func (m *Manager) Serve(w http.ResponseWriter, name string) error {
	info, path, err := m.Find(name)
	if err != nil {
		return Problem(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return Problem(fmt.Errorf("%w: %v", ErrNotFound, err))
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/vnd.sqlite3")
	h.Set("Content-Disposition", `attachment; filename="`+info.Name+`"`)
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set("X-Backup-Sha256", info.SHA256)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f)
	return nil
}
