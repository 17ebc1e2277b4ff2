package blocklist

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// LiveOptions configure NewLiveWith.
type LiveOptions struct {
	// IndexDir keeps the compiled index of the lists (one file, IndexFile), keyed by a hash of
	// the sources' names, settings and content. A start whose sources hash the same maps it
	// instead of parsing the lists: the first answer comes in milliseconds rather than seconds.
	// A file that is corrupt, truncated, of another version or byte order, or of other sources
	// is rebuilt, never used. Builds also put their temporary files there. "": no index is
	// kept, and temporary files go to os.TempDir().
	IndexDir string
	// OnIndexError, if set, is told when the index could not be kept or a kept one was rejected.
	OnIndexError func(error)
	// BuildIndex, if set (and IndexDir is), builds the index of sources in dir out of this
	// process, as BuildIndex does (cmd/dnsfence re-executes itself at the lowest CPU priority).
	// Reload calls it, then maps the file it kept after the usual checks (a stale, corrupt or
	// foreign file is never used): on a one-core router the build then neither takes the core
	// from the queries nor grows the server's heap. Reload builds in process, paced, as without
	// it, when it fails, when the file does not pass the checks, and when a list fails (only
	// the serving process has that list's last good entries). Result.Child tells which.
	BuildIndex func(ctx context.Context, sources []Source, dir string) error
	// Aside: another Set answers queries while NewLiveWith loads this one (a config reload that
	// changed the lists), so the load is a reload's: built by BuildIndex if set, else, or if
	// that fails, built here giving way to queries every few milliseconds. A first load is not
	// paced: nothing waits on it but the start.
	Aside bool
}

// IndexFile is the name of the kept index in LiveOptions.IndexDir.
const IndexFile = "blocklists.idx"

// errStaleIndex: a valid index, of other sources (or other content).
var errStaleIndex = errors.New("blocklist index is of other sources")

func (o LiveOptions) buildOptions(sources []Source, pace *pacer) buildOptions {
	opt := buildOptions{dir: o.IndexDir, onError: o.OnIndexError, pace: pace}
	if o.IndexDir == "" {
		return opt
	}
	h, err := sourcesHash(sources, pace)
	if err != nil {
		return opt // the build reports the unreadable source
	}
	opt.path, opt.hash = filepath.Join(o.IndexDir, IndexFile), h
	return opt
}

// sourcesHash hashes everything a Set is built from: each source's settings and its files' names
// and bytes. A source that cannot be read hashes as its error, so its index is never reused for
// the source once it can be read.
func sourcesHash(sources []Source, pace *pacer) ([32]byte, error) {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	field("dnsfence blocklist index " + strconv.Itoa(indexVersion))
	for _, src := range sources {
		field(src.Name)
		field(src.Category)
		field(src.Origin())
		field(strconv.FormatBool(src.Allow) + strconv.FormatBool(src.Optional))
		files, err := src.files()
		if err != nil {
			field("unreadable: " + err.Error())
			continue
		}
		for _, p := range files {
			field(p)
			if err := hashFile(h, src, p, pace); err != nil {
				return [32]byte{}, err
			}
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, nil
}

func hashFile(h hash.Hash, src Source, p string, pace *pacer) error {
	f, err := src.open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(pacedWriter{h, pace}, f)
	if err != nil {
		return err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	return nil
}

// loadIndex maps the index kept at path and returns its Set if it is valid and of sources whose
// hash is want.
// The checksum reads the whole file: pace lets a reload give way meanwhile.
func loadIndex(path string, want [32]byte, sources []Source, pace *pacer) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < headerSize || fi.Size() > 1<<34 {
		return nil, fmt.Errorf("%s: %w: %d bytes", path, errForeignIndex, fi.Size())
	}
	m := newOffHeap()
	region, err := m.file(f, int(fi.Size()))
	if err != nil {
		return nil, err
	}
	ix, err := openIndex(region, m, func() (uint32, error) { return fileChecksum(f, headerSize, fi.Size(), pace) })
	if err == nil && ix.hash != want {
		err = errStaleIndex
	}
	var s *Set
	if err == nil {
		s, err = setFromIndex(ix)
	}
	if err == nil && len(s.lists) != len(sources) {
		err = fmt.Errorf("%w: %d lists, %d sources", errForeignIndex, len(s.lists), len(sources))
	}
	if err != nil {
		m.freeAll()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ix.size = len(region)
	m.attach(ix)
	return s, nil
}

// pacedWriter lets pace yield between the buffers written to w.
type pacedWriter struct {
	w    io.Writer
	pace *pacer
}

func (pw pacedWriter) Write(b []byte) (int, error) {
	pw.pace.check()
	return pw.w.Write(b)
}

// fileChecksum is the CRC-32C of f's bytes from off to end, read with pread rather than through a
// mapping (see openIndex), giving way to pace between reads.
func fileChecksum(f *os.File, off, end int64, pace *pacer) (uint32, error) {
	h := crc32.New(castagnoli)
	if _, err := io.Copy(pacedWriter{h, pace}, io.NewSectionReader(f, off, end-off)); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// BuildIndex builds the index of sources and keeps it in dir as IndexFile, where a Live with
// IndexDir dir maps it: the work of LiveOptions.BuildIndex, for a process of its own (it does not
// give way to anything). It fails, keeping no index, if a list fails: only the serving process
// can keep that list's last good entries. An Optional source that is missing is an empty list,
// as in Reload.
func BuildIndex(sources []Source, dir string) error {
	if err := checkSources(sources); err != nil {
		return err
	}
	if dir == "" {
		return errors.New("blocklist index: no directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("blocklist index: %w", err)
	}
	var keepErr error
	opts := LiveOptions{IndexDir: dir, OnIndexError: func(err error) { keepErr = errors.Join(keepErr, err) }}
	bo := opts.buildOptions(sources, nil)
	if bo.path == "" {
		_, err := sourcesHash(sources, nil)
		return fmt.Errorf("blocklist index: hash the lists: %w", err)
	}
	s, failed := build(sources, nil, nil, bo)
	if len(failed) > 0 {
		return Result{Lists: s.Lists(), Failed: failed}.Err()
	}
	if keepErr != nil {
		return keepErr
	}
	return nil
}
