package pull

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// receipt is what an archive pull leaves in ReceiptFile.
type receipt struct {
	Source  string            `json:"source"`
	Archive Checksum          `json:"archive"`
	Files   map[string]string `json:"files"` // path -> sha256 of each regular file
}

func (p *Puller) pullArchive(ctx context.Context, u *url.URL, want Checksum, dir string) (*Result, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pull %s: %w", redact(u), err)
	}
	name := path.Base(u.Path)
	if _, err := cleanRel(name); err != nil {
		name = "archive"
	}
	t := &target{rel: name, url: u, want: want}
	if !t.want.Known() {
		if err := p.resolveChecksum(ctx, t); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	res := &Result{Source: redact(u), Dir: dir}
	if t.want.Known() {
		if files, ok := p.receiptMatches(ctx, dir, u, t.want); ok {
			p.log.Info("archive already extracted and every file intact", "archive", name, "files", len(files))
			res.Files = files
			res.Archive = &FileResult{Path: name, Verified: t.want, Action: Present}
			return res, p.loadBundle(res)
		}
	}
	partial, afr, err := p.download(ctx, dir, t)
	if err != nil {
		return nil, err
	}
	res.Archive = &afr
	// The archive is verified: whatever happens next, it is not worth
	// resuming, so it goes.
	defer func() {
		os.Remove(partial)
		removeEmptyDirs(filepath.Join(dir, PartialDir))
	}()

	plan, err := planArchive(ctx, partial, limits{p.opt.MaxFileSize, p.opt.MaxExtractSize, p.opt.MaxEntries})
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if plan.strip != "" {
		p.log.Info("archive holds a single top-level directory; extracting its contents", "dir", strings.TrimSuffix(plan.strip, "/"))
	}
	files, err := extractArchive(ctx, partial, dir, plan)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	res.Files = files
	rec := receipt{Source: u.String(), Archive: Checksum{Algo: SHA256, Hex: afr.SHA256}, Files: map[string]string{}}
	if t.want.Known() {
		rec.Archive = t.want
	}
	for _, f := range files {
		if f.SHA256 != "" {
			rec.Files[f.Path] = f.SHA256
		}
	}
	if data, err := json.MarshalIndent(rec, "", "  "); err == nil {
		if err := writeFileAtomic(filepath.Join(dir, ReceiptFile), data); err != nil {
			p.log.Warn("could not record the extracted files; the next pull downloads the archive again", "err", err)
		}
	}
	return res, p.loadBundle(res)
}

// receiptMatches reports whether dir holds an intact extraction of the same
// archive, so that it need not be downloaded again.
func (p *Puller) receiptMatches(ctx context.Context, dir string, u *url.URL, want Checksum) ([]FileResult, bool) {
	data, err := os.ReadFile(filepath.Join(dir, ReceiptFile))
	if err != nil {
		return nil, false
	}
	var rec receipt
	if json.Unmarshal(data, &rec) != nil || rec.Source != u.String() || !rec.Archive.same(want) || len(rec.Files) == 0 {
		return nil, false
	}
	var out []FileResult
	for rel, sum := range rec.Files {
		fp := filepath.Join(dir, filepath.FromSlash(rel))
		sha, _, err := digests(ctx, fp, Checksum{Algo: SHA256})
		if err != nil || sha != sum {
			return nil, false
		}
		fi, err := os.Stat(fp)
		if err != nil {
			return nil, false
		}
		out = append(out, FileResult{Path: rel, Size: fi.Size(), SHA256: sha, Verified: Checksum{Algo: SHA256, Hex: sum, Source: ReceiptFile}, Action: Present})
	}
	return out, true
}

type limits struct {
	maxFile, maxTotal int64
	maxEntries        int
}

type archiveEntry struct {
	name string // cleaned, with plan.strip removed
	typ  byte
	link string // symlink target as written, or a hard link's cleaned name
	size int64
	mode int64
	ord  int // position among the archive's headers
}

type archivePlan struct {
	entries []archiveEntry
	strip   string // common top-level directory with its slash, or ""
}

// openTar reads a tar stream, gunzipping it when it starts with the gzip
// magic (names and Content-Type lie more often than magic numbers).
func openTar(path string) (*tar.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(f)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return tar.NewReader(gz), func() { gz.Close(); f.Close() }, nil
	}
	return tar.NewReader(br), func() { f.Close() }, nil
}

// planArchive reads every header and decides, before anything is written,
// whether the archive is safe to extract: so a bad entry anywhere leaves
// the directory untouched.
func planArchive(ctx context.Context, archive string, lim limits) (*archivePlan, error) {
	tr, closeFn, err := openTar(archive)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var raw []archiveEntry
	var total int64
	for ord := 0; ; ord++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if len(raw) >= lim.maxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, lim.maxEntries)
		}
		unsafe := func(format string, args ...any) error {
			return fmt.Errorf("%w: entry %q: %s; nothing was extracted", ErrUnsafeArchive, h.Name, fmt.Sprintf(format, args...))
		}
		if h.Typeflag == tar.TypeDir && path.Clean(strings.TrimPrefix(h.Name, "./")) == "." && !strings.Contains(h.Name, "..") && !strings.HasPrefix(h.Name, "/") {
			continue // the archive's root, "./"
		}
		name, err := cleanRel(h.Name)
		if err != nil {
			return nil, unsafe("%v", err)
		}
		e := archiveEntry{name: name, typ: h.Typeflag, mode: h.Mode, ord: ord}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			e.typ = tar.TypeReg
			if h.Size > lim.maxFile {
				return nil, fmt.Errorf("%w: entry %q: %d bytes, over the %d-byte limit", ErrTooLarge, h.Name, h.Size, lim.maxFile)
			}
			total += h.Size
			if total > lim.maxTotal {
				return nil, fmt.Errorf("%w: the archive's files add up to more than %d bytes", ErrTooLarge, lim.maxTotal)
			}
			e.size = h.Size
		case tar.TypeDir:
		case tar.TypeSymlink:
			if h.Linkname == "" || strings.HasPrefix(h.Linkname, "/") || strings.ContainsAny(h.Linkname, "\x00\\") {
				return nil, unsafe("symlink to %q: only relative links inside the directory are allowed", h.Linkname)
			}
			e.link = h.Linkname
		case tar.TypeLink:
			target, err := cleanRel(h.Linkname)
			if err != nil {
				return nil, unsafe("hard link: %v", err)
			}
			e.link = target
		case tar.TypeChar, tar.TypeBlock:
			return nil, unsafe("device files are not extracted")
		case tar.TypeFifo:
			return nil, unsafe("named pipes are not extracted")
		default:
			return nil, unsafe("unsupported entry type %q", h.Typeflag)
		}
		raw = append(raw, e)
	}
	if len(raw) == 0 {
		return nil, errors.New("the archive is empty")
	}

	plan := &archivePlan{strip: commonTopDir(raw)}
	regular := map[string]bool{}
	for _, e := range raw {
		e.name = strings.TrimPrefix(e.name, plan.strip)
		if e.name == "" {
			continue // the stripped top-level directory itself
		}
		unsafe := func(format string, args ...any) error {
			return fmt.Errorf("%w: entry %q: %s; nothing was extracted", ErrUnsafeArchive, plan.strip+e.name, fmt.Sprintf(format, args...))
		}
		if _, err := cleanRel(e.name); err != nil {
			return nil, unsafe("%v", err)
		}
		switch e.typ {
		case tar.TypeReg:
			regular[e.name] = true
		case tar.TypeSymlink:
			// Lexically inside; extraction goes through os.Root, which
			// also refuses to follow any link out of the directory.
			dest := path.Join(path.Dir(e.name), e.link)
			if dest == ".." || strings.HasPrefix(dest, "../") {
				return nil, unsafe("symlink to %q points outside the directory", e.link)
			}
		case tar.TypeLink:
			if plan.strip != "" {
				if !strings.HasPrefix(e.link, plan.strip) {
					return nil, unsafe("hard link to %q outside the archive", e.link)
				}
				e.link = strings.TrimPrefix(e.link, plan.strip)
			}
			if !regular[e.link] {
				return nil, unsafe("hard link to %q, which is not an earlier file of the archive", e.link)
			}
		}
		plan.entries = append(plan.entries, e)
	}
	return plan, nil
}

// commonTopDir returns "top/" when every entry lies under one directory,
// as archives made with `tar czf x.tgz dir/` do.
func commonTopDir(entries []archiveEntry) string {
	top := ""
	below := false
	for _, e := range entries {
		first, rest, ok := strings.Cut(e.name, "/")
		if top == "" {
			top = first
		}
		if first != top {
			return ""
		}
		if !ok {
			if e.typ != tar.TypeDir {
				return "" // a file at the top level
			}
			continue
		}
		if rest != "" {
			below = true
		}
	}
	if !below {
		return ""
	}
	return top + "/"
}

// extractArchive writes the planned entries into dir through an os.Root,
// each regular file via a temporary name and a rename.
func extractArchive(ctx context.Context, archive, dir string, plan *archivePlan) (out []FileResult, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	tr, closeFn, err := openTar(archive)
	if err != nil {
		return nil, err
	}
	defer closeFn()

	byName := map[string]int{} // name -> index in out, for hard links
	var links []string
	// Belt and braces, also when extraction fails half-way: every link
	// must resolve inside the root (os.Root resolves each hop of a chain).
	defer func() {
		for _, l := range links {
			if _, serr := root.Stat(l); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
				root.Remove(l)
				if err == nil {
					err = fmt.Errorf("%w: symlink %q: %v", ErrUnsafeArchive, l, serr)
				}
			}
		}
	}()
	for ord, i := 0, 0; i < len(plan.entries); ord++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if _, err := tr.Next(); err != nil {
			return out, fmt.Errorf("read archive: %w", err)
		}
		if plan.entries[i].ord != ord {
			continue // skipped in planning: global headers, "./", the stripped top directory
		}
		e := plan.entries[i]
		i++
		switch e.typ {
		case tar.TypeDir:
			if err := root.MkdirAll(e.name, 0o755); err != nil {
				return out, fmt.Errorf("%s: %w", e.name, err)
			}
		case tar.TypeReg:
			fr, err := extractFile(ctx, root, e, tr)
			if err != nil {
				return out, err
			}
			byName[e.name] = len(out)
			out = append(out, fr)
		case tar.TypeSymlink:
			if err := replaceWith(root, e.name, func() error { return root.Symlink(e.link, e.name) }); err != nil {
				return out, fmt.Errorf("%s: %w", e.name, err)
			}
			links = append(links, e.name)
		case tar.TypeLink:
			if err := replaceWith(root, e.name, func() error { return root.Link(e.link, e.name) }); err != nil {
				return out, fmt.Errorf("%s: %w", e.name, err)
			}
			fr := out[byName[e.link]]
			fr.Path = e.name
			byName[e.name] = len(out)
			out = append(out, fr)
		}
	}
	return out, nil
}

func replaceWith(root *os.Root, name string, create func() error) error {
	if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return create()
}

func extractFile(ctx context.Context, root *os.Root, e archiveEntry, r io.Reader) (FileResult, error) {
	if err := root.MkdirAll(path.Dir(e.name), 0o755); err != nil {
		return FileResult{}, fmt.Errorf("%s: %w", e.name, err)
	}
	mode := fs.FileMode(0o644)
	if e.mode&0o111 != 0 {
		mode = 0o755
	}
	tmp := e.name + ".vidx-tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return FileResult{}, fmt.Errorf("%s: %w", e.name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, io.LimitReader(r, e.size)})
	if err == nil && n != e.size {
		err = fmt.Errorf("archive entry ends after %d of %d bytes", n, e.size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, e.name)
	}
	if err != nil {
		root.Remove(tmp)
		return FileResult{}, fmt.Errorf("%s: %w", e.name, err)
	}
	return FileResult{Path: e.name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Action: Extracted}, nil
}
