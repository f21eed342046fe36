package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	"github.com/hubtunnel/hubtunnel/version"
)

// defaultConfig is where the CCU addon keeps the agent's config.
const defaultConfig = "/usr/local/etc/config/addons/hubtunnel/hubtunnel.toml"

const updateUsage = `usage:
  hubtunnel update check   [--config FILE]
  hubtunnel update install [--version V] [--allow-downgrade] [--config FILE]`

// update runs "hubtunnel update ...". check and install ask the running
// agent, through its local API, to do the work the settings panel's
// buttons do too; apply is the installer process the agent starts.
func update(args []string) error {
	if len(args) == 0 {
		return errors.New(updateUsage)
	}
	confPath := defaultConfig
	var opt localapi.InstallOptions
	var file, sum, from, to string
	for i := 1; i < len(args); i++ {
		a := args[i]
		val := func() string {
			if i+1 >= len(args) {
				return ""
			}
			i++
			return args[i]
		}
		switch a {
		case "--config":
			confPath = val()
		case "--version":
			opt.Version = val()
		case "--allow-downgrade":
			opt.AllowDowngrade = true
		case "--file":
			file = val()
		case "--sha256":
			sum = val()
		case "--from":
			from = val()
		case "--to":
			to = val()
		default:
			return errors.New(updateUsage)
		}
	}
	cfg, err := agent.LoadConfig(confPath)
	if err != nil {
		return err
	}
	switch args[0] {
	case "check":
		return updateCheck(cfg)
	case "install":
		return updateInstall(cfg, opt)
	case "apply":
		return updateApply(cfg, file, sum, from, to)
	}
	return errors.New(updateUsage)
}

// actionClient is a client of the running agent's API that may act: it
// carries the API token, which only root can read. tokenErr says why it
// has none; refused reports the action's error, or tokenErr in its place.
func actionClient(cfg *agent.Config) (c *localapi.Client, refused func(error) error) {
	c = localapi.NewClient(cfg.UIListen)
	tok, tokenErr := localapi.ReadToken(cfg.APITokenDir())
	c.Token = tok
	return c, func(err error) error {
		if tokenErr != nil && err != nil && !errors.Is(err, localapi.ErrNotRunning) {
			return tokenErr
		}
		return err
	}
}

func updateCheck(cfg *agent.Config) error {
	c, refused := actionClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u, err := c.Check(ctx)
	err = refused(err)
	if errors.Is(err, localapi.ErrNotRunning) {
		return err
	}
	if err != nil {
		return fmt.Errorf("update check failed: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	switch {
	case u.Available:
		fmt.Printf("running %s; %s is available (hubtunnel update install)\n", st.Version, u.Latest)
	default:
		fmt.Printf("running %s; the newest release is %s\n", st.Version, u.Latest)
	}
	if u.Auto && !u.PlannedInstall.IsZero() {
		fmt.Printf("automatic update planned at %s\n", u.PlannedInstall.Local().Format("2006-01-02 15:04"))
	}
	if r := u.LastResult; r != nil && !r.OK {
		fmt.Printf("last update (%s → %s, %s) failed: %s\n", r.From, r.To, r.Time.Local().Format("2006-01-02 15:04"), r.Reason)
	}
	return nil
}

func updateInstall(cfg *agent.Config, opt localapi.InstallOptions) error {
	c, refused := actionClient(cfg)
	start := time.Now().Truncate(time.Second)
	fmt.Println("downloading and checking the release…")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	v, err := c.Install(ctx, opt)
	err = refused(err)
	if errors.Is(err, localapi.ErrNotRunning) {
		return err
	}
	if err != nil {
		return fmt.Errorf("not installed: %v", err)
	}
	fmt.Printf("installing %s; the agent restarts and must bring the tunnel up…\n", v)
	// The installer reports through the result file the status API shows;
	// it has the health timeout twice over (new version, then rollback).
	deadline := time.Now().Add(2*cfg.Installer(nil).HealthTimeout + 3*time.Minute)
	for time.Now().Before(deadline) {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(sctx)
		scancel()
		if err == nil && st.Update != nil {
			if r := st.Update.LastResult; r != nil && r.To == v && !r.Time.Before(start) {
				if r.OK {
					fmt.Printf("%s is installed and the tunnel is up\n", r.To)
					return nil
				}
				return fmt.Errorf("update failed: %s", r.Reason)
			}
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("no result after %v; see %s", time.Since(start).Round(time.Second), "update.log next to the config")
}

// updateApply is the installer process: it holds the update lock the agent
// handed over, swaps the binary, restarts the agent and checks it.
func updateApply(cfg *agent.Config, file, sum, from, to string) error {
	if file == "" || sum == "" || to == "" {
		return errors.New("usage: hubtunnel update apply --config FILE --file PATH --sha256 HEX --from V --to V (run by the agent)")
	}
	lock, err := selfupdate.InheritedLock()
	if err != nil {
		return err
	}
	defer lock.Close()
	signal.Ignore(syscall.SIGHUP) // the agent's end must not end this
	logger := log.New(os.Stderr, "", log.LstdFlags)
	logger.Printf("update: installer %s, %s → %s", version.Version, from, to)
	r := cfg.Installer(logger.Printf).Apply(context.Background(), file, sum, from, to)
	if !r.OK {
		return errors.New(r.Reason)
	}
	return nil
}
