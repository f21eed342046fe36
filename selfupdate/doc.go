// Package selfupdate updates the agent safely: signed releases, fetching
// and verifying them, installing with a rollback, recovering an update
// whose installer died, and the schedule that does all this by itself.
//
// A release is a Manifest signed with ed25519 (Sign, Open). A Source
// fetches it and its artifact for the hub's architecture (hubinfo.Hub.Arch),
// and nothing is unpacked before the signature, size and SHA-256 check out;
// CheckBinary then wants an ELF for this CPU that answers "version" as the
// manifest says. The Installer, in a process of its own holding the update
// Lock, keeps the running binary as <binary>.prev, renames the new one into
// place, restarts the agent and waits for its status API to report the new
// version connected, else puts the previous one back. A journal in the
// state folder lets Recover (or the addon's init script) undo a swap whose
// installer died.
//
// The Updater is the agent's scheduler: configured by the [update] table
// (Config), it checks daily at a random minute, installs a newer release
// inside the window when automatic updates are on, installs on request
// (the local API's actions), and runs Recover every 30 s. It starts the
// installer as "hubtunnel update apply" in a session of its own, because
// the restart ends the agent's process. The agent gives it everything it
// uses: the config, the state folder, an HTTP client (through the tunnel
// to the relay's release server), a logger and a clock.
//
// Downloads and the installer's copy live in folders of their own (0700,
// checked by PrivateDir); the installer installs its copy only if its
// SHA-256 is the one the updater took, never the path it was given. An
// older release installs only on an explicit request, never below the
// newest manifest's MinVersion.
//
// It never touches the installed binary before a release is verified,
// never leaves the hub without a binary that ran before, and writes its
// state files atomically (internal/atomicfile).
package selfupdate
