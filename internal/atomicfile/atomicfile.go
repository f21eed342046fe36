// Package atomicfile writes the files hubtunnel's state lives in (keys,
// config, caches, update journals, release manifests) so that a power cut
// or a kill at any moment leaves either the old file or the new one, whole:
// write a temporary file in the same folder, fsync it, rename it over the
// target, fsync the folder.
//
// It must never leave a temporary file behind on an error, and never
// report success for data that did not reach the disk.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, with mode perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// File is a replacement for a file, written in place of its temporary
// name until Commit puts it at the target. Abort after Commit does
// nothing, so `defer f.Abort()` cleans up every early return.
type File struct {
	f      *os.File
	path   string
	perm   os.FileMode
	err    error // the first write error, reported by Commit
	closed bool
}

// Create starts a replacement for path. The temporary file is in path's
// folder (a rename across file systems would not be atomic) and hidden.
func Create(path string, perm os.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	return &File{f: f, path: path, perm: perm}, nil
}

var _ io.Writer = (*File)(nil)

// Write writes to the temporary file. After an error every later Write
// and Commit fail with it.
func (f *File) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n, err := f.f.Write(p)
	if err != nil {
		f.err = err
	}
	return n, err
}

// Commit syncs the data, renames the file over the target and syncs the
// folder. On any error the target is unchanged and the temporary file gone.
func (f *File) Commit() error {
	if f.closed {
		return fmt.Errorf("atomicfile: %s: already committed or aborted", f.path)
	}
	err := f.err
	if err == nil {
		err = f.f.Chmod(f.perm)
	}
	if err == nil {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.closed = true
	if err == nil {
		err = os.Rename(f.f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.f.Name())
		return fmt.Errorf("atomicfile: write %s: %w", f.path, err)
	}
	if err := SyncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", f.path, err)
	}
	return nil
}

// Abort removes the temporary file; the target is unchanged. A no-op
// after Commit or a first Abort.
func (f *File) Abort() {
	if f.closed {
		return
	}
	f.closed = true
	f.f.Close()
	os.Remove(f.f.Name())
}

// SyncDir makes a rename or a new file in dir survive a power cut. File
// systems that cannot sync a folder (os.ErrInvalid) are not an error.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
