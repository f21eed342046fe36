package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/hubtunnel/hubtunnel/store"
)

const userUsage = `usage:
  hubrelay user add NAME [--config FILE]      add an account; the password is read from stdin
  hubrelay user passwd NAME [--config FILE]   set a new password; ends the account's sessions
  hubrelay user remove NAME [--config FILE]   remove an account, its grants and sessions
  hubrelay user list [--config FILE]          list the accounts
--config defaults to relay.toml. A password is one line on stdin; on a
terminal it is asked for twice, without echo`

func (c cli) user(args []string) error {
	if len(args) == 0 {
		return errors.New(userUsage)
	}
	cmd := args[0]
	config, rest, err := splitArgs(args[1:])
	if err != nil {
		return fmt.Errorf("%v\n%s", err, userUsage)
	}
	want := 1
	if cmd == "list" {
		want = 0
	}
	switch cmd {
	case "add", "passwd", "remove", "list":
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, userUsage)
	}
	if len(rest) != want {
		return errors.New(userUsage)
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, config)
	if err != nil {
		return err
	}
	defer db.Close()
	switch cmd {
	case "list":
		return c.listUsers(ctx, db)
	case "remove":
		name := rest[0]
		if err := db.RemoveUser(ctx, name); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("there is no user %q", name)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "removed user %s, with their grants and sessions\n", name)
		return nil
	}
	name := rest[0]
	if err := store.CheckUserName(name); err != nil {
		return fmt.Errorf("%q cannot be a user name: use lower-case letters, digits and . _ @ - (at most 64, starting with a letter or digit)", name)
	}
	// Say "taken" or "missing" before asking for a password.
	_, err = db.UserByName(ctx, name)
	switch {
	case cmd == "add" && err == nil:
		return fmt.Errorf("there is already a user %q", name)
	case cmd == "passwd" && errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("there is no user %q", name)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	pw, err := c.readPassword(name)
	if err != nil {
		return err
	}
	if cmd == "add" {
		if _, err := db.AddUser(ctx, name, pw); err != nil {
			return userError(name, err)
		}
		fmt.Fprintf(c.stdout, "added user %s\n", name)
		return nil
	}
	if err := db.SetPassword(ctx, name, pw); err != nil {
		return userError(name, err)
	}
	fmt.Fprintf(c.stdout, "changed the password of %s and ended their sessions\n", name)
	return nil
}

func userError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("there is already a user %q", name)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("there is no user %q", name)
	case errors.Is(err, store.ErrPasswordTooShort):
		return fmt.Errorf("the password is too short: use at least %d characters", store.MinPasswordLen)
	}
	return err
}

// readPassword reads one line from stdin, or on a terminal asks twice
// without echo.
func (c cli) readPassword(name string) (string, error) {
	var pw string
	if c.terminal != nil {
		a, err := c.terminal(fmt.Sprintf("Password for %s: ", name))
		if err != nil {
			return "", err
		}
		b, err := c.terminal("Again: ")
		if err != nil {
			return "", err
		}
		if a != b {
			return "", errors.New("the two passwords differ; nothing changed")
		}
		pw = a
	} else {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return "", errors.New("the password is empty: give it as one line on stdin, e.g. hubrelay user add NAME < file")
	}
	if len([]rune(pw)) < store.MinPasswordLen {
		return "", fmt.Errorf("the password is too short: use at least %d characters", store.MinPasswordLen)
	}
	return pw, nil
}

func (c cli) listUsers(ctx context.Context, db *store.Store) error {
	us, err := db.Users(ctx)
	if err != nil {
		return err
	}
	if len(us) == 0 {
		fmt.Fprintln(c.stdout, "no users yet: hubrelay user add NAME")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCREATED\tTOTP\tSTATE")
	for _, u := range us {
		totp, state := "no", "active"
		if u.HasTOTP {
			totp = "yes"
		}
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Name, c.showTime(u.Created), totp, state)
	}
	return w.Flush()
}
