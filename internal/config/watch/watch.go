// Package watch serves a config folder: it notices edits (Dir) and turns a rejected
// load into the lines every front end shows (ErrorLines). Used by skein up and skein
// control alike, so both apply and reject edits the same way.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"skein.dev/skein/internal/config"
)

// Dir calls onChange (from this goroutine only) after files under dir change,
// coalescing bursts of events: editors write a file in several steps.
func Dir(ctx context.Context, dir string, settle time.Duration, logger *slog.Logger, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	addTree := func() {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				if strings.HasPrefix(d.Name(), ".") && path != dir {
					return filepath.SkipDir
				}
				_ = w.Add(path)
			}
			return nil
		})
	}
	addTree()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					addTree()
				}
			}
			if timer == nil {
				timer = time.NewTimer(settle)
			} else {
				timer.Reset(settle)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			logger.Warn("file watch", "err", err)
		case <-fire:
			fire = nil
			onChange()
		}
	}
}

// ErrorLines splits a failed config.Load into one "file:line:col: ..." line per
// problem.
func ErrorLines(err error) []string {
	var list config.ErrorList
	if errors.As(err, &list) {
		out := make([]string, 0, len(list))
		for _, e := range list {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// ReportRejected tells the log and the user's terminal that an edit was rejected and
// the previous config keeps serving, one line per problem.
func ReportRejected(logger *slog.Logger, out io.Writer, lines []string) {
	for _, l := range lines {
		logger.Error("config rejected; the previous config keeps serving", "error", l)
	}
	fmt.Fprintf(out, "config rejected (previous config keeps serving):\n")
	for _, l := range lines {
		fmt.Fprintf(out, "  %s\n", l)
	}
}
