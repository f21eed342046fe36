package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/hubinfo"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
)

const enrollUsage = "usage: hubtunnel enroll CODE [--config FILE]"

// newConfig is the config `hubtunnel enroll` writes where there is none.
const newConfig = `# hubtunnel's config (see the config reference in README.md). The relay,
# its key and the tunnel addresses come from enrollment.json beside it.
`

// connectTimeout bounds how long `hubtunnel enroll` waits for a running
// agent to come back connected after it enrolled.
const connectTimeout = time.Minute

// enrollHub runs "hubtunnel enroll CODE": the code is checked first (a
// typo is reported before anything goes out); a running agent is asked to
// enroll (and restarts to connect); without one the hub enrolls here and
// the agent connects when it starts.
func enrollHub(args []string, out io.Writer) error {
	confPath := defaultConfig
	var words []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			confPath = args[i+1]
			i++
		case strings.HasPrefix(a, "-"):
			return errors.New(enrollUsage)
		default:
			words = append(words, a) // a code typed with spaces
		}
	}
	if len(words) == 0 {
		return errors.New(enrollUsage)
	}
	code, err := enroll.Parse(strings.Join(words, " "))
	if err != nil {
		return fmt.Errorf("not enrolled: %w", err)
	}

	made := false
	if _, err := os.Stat(confPath); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.WriteFile(confPath, []byte(newConfig), 0o600); err != nil {
			return fmt.Errorf("not enrolled: %w", err)
		}
		made = true
	}
	cfg, err := agent.LoadConfig(confPath)
	if err == nil {
		err = enrollWith(cfg, code, confPath, out)
	}
	if err != nil && made {
		os.Remove(confPath) // the hub keeps what it had: nothing
	}
	return err
}

func enrollWith(cfg *agent.Config, code enroll.Code, confPath string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, refused := actionClient(cfg)
	ans, err := c.Enroll(ctx, code.String())
	err = refused(err)
	switch {
	case errors.Is(err, localapi.ErrNotRunning):
		e, err := agent.Enroll(ctx, cfg, code, agent.Software(version.Version, hubinfo.Detect()), nil)
		if err != nil {
			return fmt.Errorf("not enrolled: %w", err)
		}
		fmt.Fprintf(out, "enrolled as hub %s at relay %s\n", e.Hub, e.Relay)
		if e.URL != "" {
			fmt.Fprintf(out, "its WebUI will be at %s once the agent runs\n", e.URL)
		}
		if confPath == defaultConfig {
			fmt.Fprintln(out, "start the agent: /usr/local/etc/config/rc.d/hubtunnel restart")
		} else {
			fmt.Fprintf(out, "start the agent: hubtunnel run --config %s\n", confPath)
		}
		return nil
	case err != nil:
		return fmt.Errorf("not enrolled: %w", err)
	}
	fmt.Fprintf(out, "enrolled as hub %s at relay %s; the agent restarts to connect…\n", ans.Hub, ans.Relay)
	var st localapi.Status
	deadline := time.Now().Add(connectTimeout)
	for time.Now().Before(deadline) {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err = c.Status(sctx)
		scancel()
		if err == nil && st.State == localapi.StateConnected && st.Name == ans.Hub {
			if ans.URL != "" {
				fmt.Fprintf(out, "connected: the hub is reachable at %s\n", ans.URL)
			} else {
				fmt.Fprintln(out, "connected: the hub is reachable through the relay")
			}
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	why := "the agent did not answer"
	if err == nil {
		why = stateWords(st.State)
		if st.LastError != "" {
			why = st.LastError
		}
	}
	return fmt.Errorf("enrolled, but the tunnel is not up after %v: %s (hubtunnel status shows more)", connectTimeout, why)
}
