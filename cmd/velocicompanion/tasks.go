package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"velocicompanion/adapters/auth"
	"velocicompanion/commands"
	"velocicompanion/domain"
	"velocicompanion/eventstore"
	"velocicompanion/projections"
)

func migrateOnly(ctx context.Context, cfg config, stdout io.Writer) error {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	fmt.Fprintln(stdout, "database schema is up to date")
	return nil
}

func replay(ctx context.Context, cfg config, name string, stdout, stderr io.Writer) error {
	var target projections.Projector
	var names []string
	for _, p := range projectors() {
		names = append(names, p.Name())
		if p.Name() == name {
			target = p
		}
	}
	if target == nil {
		return fmt.Errorf("replay: --projection must be one of %s", strings.Join(names, ", "))
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	store := eventstore.NewStore(db.app, commands.NewCodec())
	bar := newProgressBar(stderr, "rebuilding "+name)
	if err := projections.Rebuild(ctx, db.owner, store, target, bar.update); err != nil {
		return fmt.Errorf("replay %s: %w", name, err)
	}
	bar.finish()
	fmt.Fprintf(stdout, "%s rebuilt from the event store and swapped in (%d events)\n", name, bar.done)
	return nil
}

func verify(ctx context.Context, cfg config, tenant string, stdout io.Writer) error {
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	store := eventstore.NewStore(db.app, commands.NewCodec())
	rep, err := store.Verify(ctx, domain.TenantID(tenant))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "verified %d events in %d streams\n", rep.Events, rep.Streams)
	var chainErr error
	if rep.OK() {
		fmt.Fprintln(stdout, "OK: every hash chain is intact")
	} else {
		for _, b := range rep.Breaks {
			fmt.Fprintln(stdout, "BREAK:", b.String())
		}
		chainErr = fmt.Errorf("verify: %d broken streams", len(rep.Breaks))
	}
	// The signed checkpoints cover what the chains cannot: the order across
	// streams and the removal of a stream's last events.
	return errors.Join(chainErr, verifyCheckpoints(ctx, cfg, store, domain.TenantID(tenant), stdout))
}

func createPlatformAdmin(ctx context.Context, cfg config, username string, stdin io.Reader, stdout io.Writer) error {
	if username == "" {
		return errors.New("admin create-platform-admin: --username is required")
	}
	fmt.Fprintln(stdout, "password (read from standard input, one line):")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return errors.New("admin create-platform-admin: no password on standard input")
	}
	password := strings.TrimRight(line, "\r\n")
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.close()
	hasher, err := auth.NewHasher(auth.HasherOptions{})
	if err != nil {
		return err
	}
	h := commands.New(eventstore.NewStore(db.app, commands.NewCodec()), hasher)
	res, err := h.CreatePlatformAdmin(ctx, username, password)
	if err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return fmt.Errorf("admin create-platform-admin: %s", de.Message)
		}
		return err
	}
	fmt.Fprintf(stdout, "platform administrator %s created (id %s)\n", username, res.ID)
	return nil
}

// progressBar draws a one-line progress bar on a terminal or log.
type progressBar struct {
	w     io.Writer
	label string
	done  int64
	last  int
}

func newProgressBar(w io.Writer, label string) *progressBar {
	return &progressBar{w: w, label: label, last: -1}
}

func (b *progressBar) update(done, total int64) {
	b.done = done
	pct := 100
	if total > 0 {
		pct = int(done * 100 / total)
	}
	if pct == b.last {
		return
	}
	b.last = pct
	const width = 40
	filled := width * pct / 100
	fmt.Fprintf(b.w, "\r%s [%s%s] %3d%% %d/%d events", b.label,
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), pct, done, total)
}

func (b *progressBar) finish() { fmt.Fprintln(b.w) }
