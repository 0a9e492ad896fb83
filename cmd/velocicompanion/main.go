// Command velocicompanion is the VelociCompanion server and its operator tasks:
// serve, migrate, replay, verify, maintain and admin. main only parses the command line
// and calls run; all wiring is in this package, in plain sight.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "velocicompanion:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: velocicompanion [command] [flags]

commands:
  serve                          run the server (default)
  migrate                        create or upgrade the database schema and exit
  replay --projection NAME       rebuild a read model from the event store and swap it in
  verify [--tenant T]            check the hash chains of the event store
  maintain                       delete what expired beyond its retention, once, and print what went
  admin create-platform-admin --username U
                                 create a platform administrator; the password is read from stdin
  version                        print the version

Every flag can also be set with an environment variable VC_<FLAG> (see README).
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("velocicompanion "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage, "\nflags:\n")
		fs.PrintDefaults()
	}
	switch cmd {
	case "serve":
		cfg, err := loadConfig(fs, args)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	case "migrate":
		cfg, err := loadConfig(fs, args)
		if err != nil {
			return err
		}
		return migrateOnly(ctx, cfg, stdout)
	case "replay":
		projection := fs.String("projection", "", "name of the read model to rebuild (e.g. userlist.v1)")
		cfg, err := loadConfig(fs, args)
		if err != nil {
			return err
		}
		return replay(ctx, cfg, *projection, stdout, stderr)
	case "verify":
		tenant := fs.String("tenant", "", "verify only this tenant's streams")
		cfg, err := loadConfig(fs, args)
		if err != nil {
			return err
		}
		return verify(ctx, cfg, *tenant, stdout)
	case "maintain":
		cfg, err := loadConfig(fs, args)
		if err != nil {
			return err
		}
		return maintain(ctx, cfg, stdout)
	case "admin":
		if len(args) == 0 || args[0] != "create-platform-admin" {
			fs.Usage()
			return errors.New("admin: unknown task; try create-platform-admin")
		}
		username := fs.String("username", "", "user name of the new platform administrator")
		cfg, err := loadConfig(fs, args[1:])
		if err != nil {
			return err
		}
		return createPlatformAdmin(ctx, cfg, *username, stdin, stdout)
	case "version":
		fmt.Fprintln(stdout, "velocicompanion", version)
		return nil
	case "help", "-h", "--help":
		fs.Usage()
		return nil
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", cmd)
}
