// Package selfupdate updates the agent safely: signed releases, fetching
// and verifying them, installing with a rollback, and recovering an update
// whose installer died.
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
// It never touches the installed binary before a release is verified, and
// never leaves the hub without a binary that ran before.
package selfupdate
