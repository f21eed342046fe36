package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/version"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const backupUsage = `usage:
  hubrelay backup FILE         write a backup of the relay, while it runs:
                               its store and its key files, as one
                               .tar.gz (0600); FILE "-" writes to stdout
  hubrelay restore FILE        put a backup in place of the store and key
                               files of the (stopped) relay of --config; the
                               files it replaces are kept beside them as
                               NAME.before-restore-TIME
A backup is a secret: it holds the relay's private key (whoever has it can
pose as this relay to its hubs) and the seeds of waiting enrollment codes.
Passwords, app tokens and sessions are in it only as hashes`

// The members of a backup archive, by role, not by the names the relay's
// config gives the files: a backup restores into a relay whose files are
// named otherwise.
const (
	backupManifest = "hubtunnel-backup.json"
	backupStore    = "store.db"
	backupKey      = "relay.key"
	backupKeyNext  = "relay.key.next"
	backupKeyOld   = "relay.key.old"
	backupFormat   = 1
	// maxKeyFile and maxStoreFile bound what a restore reads from an
	// archive, which may be damaged or not a backup at all.
	maxKeyFile   = 4 << 10
	maxStoreFile = 64 << 30
	maxManifest  = 64 << 10
)

// backupManifestFile is the archive's first member.
type backupManifestFile struct {
	Format   int                   `json:"format"`
	Created  time.Time             `json:"created"`
	Hubrelay string                `json:"hubrelay"`
	Schema   int                   `json:"schema"`
	Key      string                `json:"key"` // the relay's public key, for the operator to recognise
	Files    map[string]backupFile `json:"files"`
}

type backupFile struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// keyFiles maps the archive's key members to the config's files.
func keyFiles(cfg *relay.Config) map[string]string {
	return map[string]string{
		backupKey:     cfg.PrivateKeyFile,
		backupKeyNext: relay.NextKeyFile(cfg.PrivateKeyFile),
		backupKeyOld:  cfg.PrivateKeyFile + ".old",
	}
}

func (c cli) backup(args []string) error {
	a, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	if len(a.rest) != 1 {
		return errors.New(backupUsage)
	}
	out := a.rest[0]
	ctx := context.Background()
	cfg, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()

	// The store's copy first, in a private folder beside the target: it
	// is as large as the store, and must not land anywhere world-readable.
	tmp, err := os.MkdirTemp(filepath.Dir(cfg.Store), ".backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, backupStore)
	if err := db.Backup(ctx, snap); err != nil {
		return err
	}
	schema, err := store.VerifyCopy(ctx, snap)
	if err != nil {
		return fmt.Errorf("the store's copy: %w", err)
	}
	key, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return fmt.Errorf("the relay's key: %w", err)
	}
	members := []struct{ name, path string }{{backupStore, snap}}
	for _, name := range []string{backupKey, backupKeyNext, backupKeyOld} {
		path := keyFiles(cfg)[name]
		if _, err := vpn.LoadPrivateKey(path); err != nil {
			if name != backupKey && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		members = append(members, struct{ name, path string }{name, path})
	}
	m := backupManifestFile{
		Format: backupFormat, Created: c.clock().UTC().Truncate(time.Second), Hubrelay: version.Version,
		Schema: schema, Key: key.Public().String(), Files: map[string]backupFile{},
	}
	for _, mb := range members {
		f, err := fileDigest(mb.path)
		if err != nil {
			return err
		}
		m.Files[mb.name] = f
	}

	var w io.Writer = c.stdout
	var af *atomicfile.File
	if out != "-" {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("%s exists: choose another name", out)
		}
		if af, err = atomicfile.Create(out, 0o600); err != nil {
			return err
		}
		defer af.Abort()
		w = af
	}
	if err := writeBackup(w, m, members); err != nil {
		return err
	}
	if af != nil {
		if err := af.Commit(); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "wrote %s: the store (schema %d, %s) and %d key file(s) of relay key %s; keep it as secret as the key itself\n",
			out, schema, bytesText(m.Files[backupStore].Size), len(members)-1, m.Key)
	}
	return nil
}

// writeBackup writes the archive: the manifest, then each member.
func writeBackup(w io.Writer, m backupManifestFile, members []struct{ name, path string }) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(backupManifest, int64(len(mj)))); err != nil {
		return err
	}
	if _, err := tw.Write(mj); err != nil {
		return err
	}
	for _, mb := range members {
		f, err := os.Open(mb.path)
		if err != nil {
			return err
		}
		err = tw.WriteHeader(hdr(mb.name, m.Files[mb.name].Size))
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", mb.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func fileDigest(path string) (backupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return backupFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return backupFile{}, err
	}
	return backupFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func (c cli) restore(args []string) error {
	a, err := parseArgs(args, nil, nil)
	if err != nil {
		return err
	}
	if len(a.rest) != 1 {
		return errors.New(backupUsage)
	}
	cfg, err := relay.LoadConfig(a.config)
	if err != nil {
		return err
	}
	if store.IsPostgres(cfg.Store) {
		return errors.New("the store is a PostgreSQL database: restore it with the server's tools (pg_restore); this restores SQLite stores")
	}
	// Held until the files are in place: a relay started meanwhile
	// waits for nothing but is refused, and a running one refuses us.
	lock, err := store.LockStore(cfg.Store)
	if errors.Is(err, store.ErrLocked) {
		return errors.New("the relay is running on this store: stop it first, restore, then start it")
	}
	if err != nil {
		return err
	}
	defer lock.Release()

	in, err := os.Open(a.rest[0])
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.MkdirTemp(filepath.Dir(cfg.Store), ".restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	m, err := readBackup(in, tmp)
	if err != nil {
		return fmt.Errorf("%s is not a usable backup: %w", a.rest[0], err)
	}
	ctx := context.Background()
	if _, err := store.VerifyCopy(ctx, filepath.Join(tmp, backupStore)); err != nil {
		return fmt.Errorf("%s: its store: %w", a.rest[0], err)
	}
	key, err := vpn.LoadPrivateKey(filepath.Join(tmp, backupKey))
	if err != nil {
		return fmt.Errorf("%s: its key: %w", a.rest[0], err)
	}
	if key.Public().String() != m.Key {
		return fmt.Errorf("%s: its key is not the one its manifest names", a.rest[0])
	}

	// Everything checked: put the current files aside, the backup's in
	// their place. A file the backup lacks (a next key made since) is
	// put aside too, so that nothing of the old state mixes with it.
	stamp := c.clock().Format("20060102-150405")
	targets := map[string]string{backupStore: cfg.Store}
	for name, path := range keyFiles(cfg) {
		targets[name] = path
	}
	var aside []string
	for _, old := range []string{cfg.Store, cfg.Store + "-wal", cfg.Store + "-shm", cfg.PrivateKeyFile, relay.NextKeyFile(cfg.PrivateKeyFile), cfg.PrivateKeyFile + ".old"} {
		if _, err := os.Lstat(old); err != nil {
			continue
		}
		to := old + ".before-restore-" + stamp
		if err := os.Rename(old, to); err != nil {
			return fmt.Errorf("put %s aside: %w (files put aside so far: %v)", old, err, aside)
		}
		aside = append(aside, to)
	}
	for name := range m.Files {
		to := targets[name]
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(tmp, name), to); err != nil {
			return fmt.Errorf("put %s in place: %w (the previous files are kept: %v)", to, err, aside)
		}
	}
	if err := syncDir(filepath.Dir(cfg.Store)); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "restored the store (schema %d, backed up %s by hubrelay %s) and the relay's key %s\n",
		m.Schema, m.Created.Local().Format("2006-01-02 15:04"), m.Hubrelay, m.Key)
	for _, p := range aside {
		fmt.Fprintf(c.stdout, "kept the previous %s\n", p)
	}
	fmt.Fprintln(c.stdout, "start the relay: hubs connect with their keys as before")
	return nil
}

// readBackup reads an archive into dir: the manifest first, then only the
// members it names, each once, a regular file no larger than its bound,
// whose size and SHA-256 are the manifest's.
func readBackup(r io.Reader, dir string) (backupManifestFile, error) {
	var m backupManifestFile
	zr, err := gzip.NewReader(r)
	if err != nil {
		return m, fmt.Errorf("not gzip: %w", err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return m, fmt.Errorf("not a tar archive: %w", err)
	}
	if h.Name != backupManifest || h.Typeflag != tar.TypeReg || h.Size > maxManifest {
		return m, fmt.Errorf("its first member is %q, not %s", h.Name, backupManifest)
	}
	if err := json.NewDecoder(io.LimitReader(tr, maxManifest)).Decode(&m); err != nil {
		return m, fmt.Errorf("%s: %w", backupManifest, err)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("format %d; this hubrelay reads format %d", m.Format, backupFormat)
	}
	bound := map[string]int64{backupStore: maxStoreFile, backupKey: maxKeyFile, backupKeyNext: maxKeyFile, backupKeyOld: maxKeyFile}
	for name, f := range m.Files {
		if _, ok := bound[name]; !ok {
			return m, fmt.Errorf("the manifest names %q, which no backup holds", name)
		}
		if f.Size < 0 || f.Size > bound[name] {
			return m, fmt.Errorf("%s: size %d out of bounds", name, f.Size)
		}
	}
	if _, ok := m.Files[backupStore]; !ok {
		return m, errors.New("no store in it")
	}
	if _, ok := m.Files[backupKey]; !ok {
		return m, errors.New("no relay key in it")
	}
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, fmt.Errorf("cut off or damaged: %w", err)
		}
		want, ok := m.Files[h.Name]
		if !ok || seen[h.Name] || h.Typeflag != tar.TypeReg || h.Size != want.Size {
			return m, fmt.Errorf("member %q is not what the manifest names", h.Name)
		}
		seen[h.Name] = true
		if err := extract(tr, filepath.Join(dir, h.Name), want); err != nil {
			return m, fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	for name := range m.Files {
		if !seen[name] {
			return m, fmt.Errorf("%s is missing: the archive is cut off", name)
		}
	}
	return m, nil
}

// extract writes one member to path (0600), checking its size and hash.
func extract(r io.Reader, path string, want backupFile) error {
	f, err := atomicfile.Create(path, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, want.Size+1))
	if err != nil {
		return err
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return errors.New("its content is not what the manifest's checksum says: the archive is damaged")
	}
	return f.Commit()
}

// syncDir makes the renames into dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
