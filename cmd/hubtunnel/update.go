package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
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
	var opt agent.InstallOptions
	var file, from, to string
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
		return updateApply(cfg, file, from, to)
	}
	return errors.New(updateUsage)
}

var apiClient = &http.Client{Timeout: 15 * time.Minute}

// call POSTs to the agent's API and decodes its JSON answer into out.
func call(cfg *agent.Config, path string, body, out any) (int, error) {
	b, _ := json.Marshal(body)
	resp, err := apiClient.Post(cfg.APIURL(path), "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("the agent does not answer at %s; is it running? (%v)", cfg.UIListen, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("the agent answered %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return resp.StatusCode, nil
}

func updateCheck(cfg *agent.Config) error {
	var ans struct {
		Error  string             `json:"error"`
		Update agent.UpdateStatus `json:"update"`
	}
	if _, err := call(cfg, "/api/update/check", struct{}{}, &ans); err != nil {
		return err
	}
	if ans.Error != "" {
		return fmt.Errorf("update check failed: %s", ans.Error)
	}
	st, err := status(cfg)
	if err != nil {
		return err
	}
	u := ans.Update
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

func updateInstall(cfg *agent.Config, opt agent.InstallOptions) error {
	start := time.Now().Truncate(time.Second)
	fmt.Println("downloading and checking the release…")
	var ans struct {
		Error      string `json:"error"`
		Installing string `json:"installing"`
	}
	if _, err := call(cfg, "/api/update/install", opt, &ans); err != nil {
		return err
	}
	if ans.Error != "" {
		return fmt.Errorf("not installed: %s", ans.Error)
	}
	fmt.Printf("installing %s; the agent restarts and must bring the tunnel up…\n", ans.Installing)
	// The installer reports through the result file the status API shows;
	// it has the health timeout twice over (new version, then rollback).
	deadline := time.Now().Add(2*cfg.Installer(nil).HealthTimeout + 3*time.Minute)
	for time.Now().Before(deadline) {
		if st, err := status(cfg); err == nil && st.Update != nil {
			if r := st.Update.LastResult; r != nil && r.To == ans.Installing && !r.Time.Before(start) {
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

func status(cfg *agent.Config) (*agent.Status, error) {
	resp, err := apiClient.Get(cfg.APIURL("/api/status"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st agent.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// updateApply is the installer process: it holds the update lock the agent
// handed over, swaps the binary, restarts the agent and checks it.
func updateApply(cfg *agent.Config, file, from, to string) error {
	if file == "" || to == "" {
		return errors.New("usage: hubtunnel update apply --config FILE --file PATH --from V --to V (run by the agent)")
	}
	lock, err := agent.InheritedLock()
	if err != nil {
		return err
	}
	defer lock.Close()
	signal.Ignore(syscall.SIGHUP) // the agent's end must not end this
	logger := log.New(os.Stderr, "", log.LstdFlags)
	logger.Printf("update: installer %s, %s → %s", version.Version, from, to)
	r := cfg.Installer(logger.Printf).Apply(context.Background(), file, from, to)
	if !r.OK {
		return errors.New(r.Reason)
	}
	return nil
}
