package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/localapi"
)

const rotateKeyUsage = "usage: hubtunnel rotate-key [--config FILE]"

// rotateKey runs "hubtunnel rotate-key": the running agent replaces the
// hub's key through its tunnel (the agent does this by itself once a
// year), and this waits until it is connected with the new one.
func rotateKey(args []string, out io.Writer) error {
	confPath := defaultConfig
	switch {
	case len(args) == 2 && (args[0] == "--config" || args[0] == "-config"):
		confPath = args[1]
	case len(args) != 0:
		return errors.New(rotateKeyUsage)
	}
	cfg, err := agent.LoadConfig(confPath)
	if err != nil {
		return err
	}
	c, refused := actionClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pub, err := c.RotateKey(ctx)
	err = refused(err)
	if errors.Is(err, localapi.ErrNotRunning) {
		return err
	}
	if err != nil {
		return fmt.Errorf("the hub keeps its key: %v", err)
	}
	fmt.Fprintf(out, "this hub's key is now %s (the old one no longer connects)\n", pub)
	for ctx.Err() == nil {
		st, err := c.Status(ctx)
		if err == nil && st.State == localapi.StateConnected && st.PublicKey == pub {
			fmt.Fprintln(out, "connected to the relay with the new key")
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("the relay has the new key, but the hub has not connected with it yet: see hubtunnel status")
}
