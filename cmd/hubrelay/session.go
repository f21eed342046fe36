package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/hubtunnel/hubtunnel/store"
)

const sessionUsage = `usage:
  hubrelay session list [--user USER] [--config FILE]
                       list the login sessions that are active
  hubrelay session revoke ID [--config FILE]
  hubrelay session revoke --user USER --all [--config FILE]
                       end a session, or every session of USER; they must
                       log in again`

func (c cli) session(in []string) error {
	if len(in) == 0 {
		return errors.New(sessionUsage)
	}
	cmd := in[0]
	var a args
	var err error
	switch cmd {
	case "list":
		a, err = parseArgs(in[1:], []string{"user"}, nil)
	case "revoke":
		a, err = parseArgs(in[1:], []string{"user"}, []string{"all"})
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, sessionUsage)
	}
	if err != nil {
		return fmt.Errorf("%v\n%s", err, sessionUsage)
	}
	user := a.opt["user"]
	switch {
	case cmd == "list" && len(a.rest) != 0:
		return errors.New(sessionUsage)
	case cmd == "revoke" && len(a.rest) == 1 && (user != "" || a.on["all"]):
		return fmt.Errorf("give a session id, or --user USER --all, not both\n%s", sessionUsage)
	case cmd == "revoke" && len(a.rest) == 0 && user != "" && !a.on["all"]:
		return fmt.Errorf("to end every session of %s, add --all; to end one, give its id (hubrelay session list --user %s)", user, user)
	case cmd == "revoke" && len(a.rest) == 0 && a.on["all"] && user == "":
		return fmt.Errorf("--all needs --user USER: whose sessions?\n%s", sessionUsage)
	case cmd == "revoke" && len(a.rest) == 0 && user == "":
		return errors.New(sessionUsage)
	case cmd == "revoke" && len(a.rest) > 1:
		return errors.New(sessionUsage)
	}
	var id int64
	if cmd == "revoke" && user == "" {
		if id, err = parseID("session", a.rest[0]); err != nil {
			return err
		}
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	var u store.User
	if user != "" {
		if u, err = lookUser(ctx, db, user); err != nil {
			return err
		}
	}
	switch {
	case cmd == "list":
		return c.sessionList(ctx, db, u)
	case user != "":
		n, err := db.RevokeUserSessions(ctx, u.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(c.stdout, "%s had no active sessions\n", user)
			return nil
		}
		if err := c.record(ctx, db, store.KindRevoke, "", fmt.Sprintf("all %d sessions of %s ended", n, user)); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "ended %d session(s) of %s; a running relay cuts their open connections at once\n", n, user)
		return nil
	}
	s, err := db.SessionByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no session #%d (hubrelay session list shows the active ones)", id)
	} else if err != nil {
		return err
	}
	if !s.Active(c.clock()) {
		return fmt.Errorf("session #%d of %s has already ended", id, s.User)
	}
	if err := db.RevokeSession(ctx, id); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("session #%d of %s has already ended", id, s.User)
	} else if err != nil {
		return err
	}
	if err := c.record(ctx, db, store.KindRevoke, "", fmt.Sprintf("session #%d of %s (from %s) ended", id, s.User, or(s.Source, "an unknown address"))); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ended session #%d of %s; a running relay cuts its open connections at once\n", id, s.User)
	return nil
}

func (c cli) sessionList(ctx context.Context, db *store.Store, u store.User) error {
	var ss []store.Session
	var err error
	if u.ID != 0 {
		ss, err = db.Sessions(ctx, u.ID)
	} else {
		ss, err = db.ActiveSessions(ctx)
	}
	if err != nil {
		return err
	}
	if len(ss) == 0 {
		fmt.Fprintln(c.stdout, "no active sessions")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tSOURCE\tLOGGED IN\tEXPIRES")
	for _, s := range ss {
		fmt.Fprintf(w, "#%d\t%s\t%s\t%s\t%s\n", s.ID, s.User, or(s.Source, "-"), c.showTime(s.Created), c.showTime(s.Expires))
	}
	return w.Flush()
}
