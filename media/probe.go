package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	ffmpeg "github.com/u2takey/ffmpeg-go"

	"github.com/vidx/vidx/pipeline"
	"github.com/vidx/vidx/sourceguard"
)

// Info describes the video stream that Clips decodes.
type Info struct {
	DurationS     float64 // 0 when the container does not say
	Width, Height int     // as displayed: swapped for 90/270 degree rotation
	FPS           float64 // average frame rate; 0 when unknown
	Codec         string
	BitRate       float64 // bits per second of the whole file; 0 when unknown
}

// decodeInput are the options of an input ffmpeg decodes: inputArgs and
// the decoder's thread count.
func (d *Decoder) decodeInput(src sourceguard.Source, px *sourceguard.Proxy) ffmpeg.KwArgs {
	in := inputArgs(src, d.rwTimeout, proxyURL(px))
	if d.opts.DecodeThreads > 0 {
		in["threads"] = strconv.Itoa(d.opts.DecodeThreads)
	}
	return in
}

// inputArgs are the per-input options: a protocol whitelist so a crafted
// playlist or URI cannot make ffmpeg open other protocols or local files,
// and for a guarded source the proxy every HTTP connection goes through.
func inputArgs(s sourceguard.Source, rwTimeout time.Duration, proxyURL string) ffmpeg.KwArgs {
	if !s.Remote {
		return ffmpeg.KwArgs{"protocol_whitelist": "file"}
	}
	args := ffmpeg.KwArgs{
		"protocol_whitelist": "http,https,tcp,tls,crypto",
		"rw_timeout":         strconv.FormatInt(rwTimeout.Microseconds(), 10),
	}
	if proxyURL != "" {
		args["protocol_whitelist"] = "http,https,tcp,tls,crypto,httpproxy"
		args["http_proxy"] = proxyURL
	}
	return args
}

// parseSource accepts a plain path, a file:// URI or an http(s) URL. Local
// inputs are checked here so the common bad inputs get a precise reason
// instead of an ffmpeg message.
func parseSource(uri string) (sourceguard.Source, error) {
	s := sourceguard.Source{URI: uri}
	if uri == "" {
		return s, pipeline.Poisonf("empty video URI")
	}
	path := uri
	if i := strings.Index(uri, "://"); i > 0 {
		u, err := url.Parse(uri)
		if err != nil {
			return s, pipeline.Poison(fmt.Errorf("invalid video URI %q: %w", uri, err))
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https":
			s.Input, s.Remote = uri, true
			return s, nil
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return s, pipeline.Poisonf("file URI %q names host %q; only local files are supported", uri, u.Host)
			}
			path = u.Path
		default:
			return s, pipeline.Poisonf("unsupported URI scheme %q in %q (want a path, file://, http:// or https://)", u.Scheme, uri)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return s, fmt.Errorf("resolve %q: %w", path, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, pipeline.Poison(fmt.Errorf("video file does not exist: %w", err))
	case err != nil:
		// Permissions or I/O: likely the environment, not the message.
		return s, fmt.Errorf("stat video file: %w", err)
	case st.IsDir():
		return s, pipeline.Poisonf("video path %s is a directory", abs)
	case st.Size() == 0:
		return s, pipeline.Poisonf("video file %s is empty", abs)
	}
	// The file: prefix stops ffmpeg from reading a name such as "concat:x"
	// or "subfile:..." as a protocol.
	s.Local, s.Input = abs, "file:"+abs
	return s, nil
}

type probeOutput struct {
	Streams []struct {
		CodecType    string `json:"codec_type"`
		CodecName    string `json:"codec_name"`
		Width        int    `json:"width"`
		Height       int    `json:"height"`
		AvgFrameRate string `json:"avg_frame_rate"`
		RFrameRate   string `json:"r_frame_rate"`
		Duration     string `json:"duration"`
		Disposition  struct {
			AttachedPic int `json:"attached_pic"`
		} `json:"disposition"`
		Tags struct {
			Rotate string `json:"rotate"`
		} `json:"tags"`
		SideData []struct {
			Rotation *float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Format struct {
		Duration   string `json:"duration"`
		BitRate    string `json:"bit_rate"`
		FormatName string `json:"format_name"`
	} `json:"format"`
}

// probed is Info plus what the decoder needs to address the stream.
type probed struct {
	Info
	videoOrdinal int    // index among the file's video streams, for -map 0:v:N
	format       string // the demuxer's names, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
}

// Probe reads the first real video stream's properties: from a local
// MP4's headers or with ffprobe (Options.Probe).
func (d *Decoder) Probe(ctx context.Context, uri string) (Info, error) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	src, px, err := d.open(ctx, uri)
	if err != nil {
		return Info{}, d.ctxError(ctx, src, err)
	}
	defer d.release(&src, px)
	p, err := d.probe(ctx, src, px)
	if err != nil {
		return Info{}, d.ctxError(ctx, src, err)
	}
	return p.Info, nil
}

func (d *Decoder) probe(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy) (probed, error) {
	if p, ok := d.probeHeaders(ctx, src); ok {
		return d.admit(src, p)
	}
	return d.probeTool(ctx, src, px)
}

// probeHeaders reads a local MP4's headers where Options.Probe allows;
// ok is false where ffprobe must answer.
func (d *Decoder) probeHeaders(ctx context.Context, src sourceguard.Source) (probed, bool) {
	if src.Local == "" || d.opts.Probe != ProbeAuto {
		return probed{}, false
	}
	p, err := probeLocalMP4(src)
	if err != nil {
		d.opts.Logger.DebugContext(ctx, "sample: ffprobe", "uri", src.URI, "reason", err)
		return probed{}, false
	}
	return p, true
}

// probeTool asks ffprobe and checks its answer against the policy.
func (d *Decoder) probeTool(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy) (probed, error) {
	p, err := d.ffprobe(ctx, src, px)
	if err != nil {
		return probed{}, err
	}
	return d.admit(src, p)
}

// ffprobe asks ffprobe for the first real video stream.
func (d *Decoder) ffprobe(ctx context.Context, src sourceguard.Source, px *sourceguard.Proxy) (probed, error) {
	args := []string{"-hide_banner", "-v", "error"}
	args = append(args, ffmpeg.ConvertKwargsToCmdLineArgs(inputArgs(src, d.rwTimeout, proxyURL(px)))...)
	args = append(args,
		"-show_entries", "stream=codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,duration"+
			":stream_disposition=attached_pic:stream_tags=rotate:stream_side_data=rotation:format=duration,bit_rate,format_name",
		"-of", "json", "-i", src.Input)
	var stdout bytes.Buffer
	stderr := newTailBuffer(stderrLimit)
	if err := d.run(ctx, src, d.opts.FFprobePath, args, &stdout, stderr); err != nil {
		if ctx.Err() != nil {
			return probed{}, ctx.Err()
		}
		return probed{}, failure(src, px, "ffprobe", err, stderr.String())
	}
	var out probeOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return probed{}, fmt.Errorf("parse ffprobe output for %s: %w", src.URI, err)
	}
	ordinal := 0
	for _, s := range out.Streams {
		if s.CodecType != "video" {
			continue
		}
		if s.Disposition.AttachedPic != 0 {
			ordinal++ // cover art: a still image, not the video
			continue
		}
		if s.Width <= 0 || s.Height <= 0 {
			return probed{}, pipeline.Poisonf("%s: video stream has no frame size (%dx%d)", src.URI, s.Width, s.Height)
		}
		p := probed{videoOrdinal: ordinal, format: out.Format.FormatName, Info: Info{
			Width: s.Width, Height: s.Height, Codec: s.CodecName,
			FPS:       parseRate(s.AvgFrameRate),
			DurationS: parseSeconds(s.Duration),
		}}
		if p.FPS == 0 {
			p.FPS = parseRate(s.RFrameRate)
		}
		if p.DurationS == 0 {
			// Matroska and most streams only carry a container duration.
			p.DurationS = parseSeconds(out.Format.Duration)
		}
		rot := 0.0
		for _, sd := range s.SideData {
			if sd.Rotation != nil {
				rot = *sd.Rotation
			}
		}
		if rot == 0 {
			rot, _ = strconv.ParseFloat(s.Tags.Rotate, 64)
		}
		// ffmpeg applies the display rotation while decoding, so frames
		// arrive with the displayed orientation.
		if r := math.Mod(math.Abs(math.Round(rot)), 180); r == 90 {
			p.Width, p.Height = p.Height, p.Width
		}
		p.BitRate = parseSeconds(out.Format.BitRate) // same parsing: a non-negative number
		return p, nil
	}
	return probed{}, pipeline.Poisonf("%s has no video stream", src.URI)
}

// admit checks a probed stream against the source policy.
func (d *Decoder) admit(src sourceguard.Source, p probed) (probed, error) {
	g := d.opts.Guard
	if g == nil {
		return p, nil
	}
	if err := g.CheckFrame(src.URI, p.Width, p.Height); err != nil {
		return probed{}, err
	}
	if err := g.CheckDuration(src.URI, p.DurationS); err != nil {
		return probed{}, err
	}
	if err := g.CheckBitrate(src.URI, p.BitRate); err != nil {
		return probed{}, err
	}
	return p, nil
}

func parseRate(s string) float64 {
	num, den, ok := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0
	}
	if ok {
		d, err := strconv.ParseFloat(den, 64)
		if err != nil || d == 0 {
			return 0
		}
		n /= d
	}
	if math.IsNaN(n) || math.IsInf(n, 0) || n < 0 {
		return 0
	}
	return n
}

func parseSeconds(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0
	}
	return v
}

// classifyFailure turns a failed ffmpeg/ffprobe run into an error that says
// why and carries the pipeline class: input problems are poison, network
// trouble with a remote source is retryable, anything else is left
// unclassified for the runtime's bounded retries.
func classifyFailure(src sourceguard.Source, tool string, runErr error, stderr string) error {
	msg := lastLines(stderr, 3)
	lower := strings.ToLower(stderr)
	wrap := func(reason string) error {
		if msg == "" {
			return fmt.Errorf("%s: %s (%s: %w)", src.URI, reason, tool, runErr)
		}
		return fmt.Errorf("%s: %s (%s: %w: %s)", src.URI, reason, tool, runErr, msg)
	}
	var execErr *execStartError
	if errors.As(runErr, &execErr) {
		return fmt.Errorf("%s: %w", src.URI, runErr) // our installation, not the input
	}
	if src.Remote {
		kind := "HTTP source"
		switch src.Scheme {
		case sourceguard.SchemeRTSP, sourceguard.SchemeRTMP, sourceguard.SchemeRTMPS, sourceguard.SchemeSRT:
			kind = strings.ToUpper(src.Scheme) + " source"
		}
		switch {
		case strings.Contains(lower, "server returned 4"):
			return pipeline.Poison(wrap(kind + " rejected the request"))
		case containsAny(lower, "server returned 5", "timed out", "connection refused", "connection reset",
			"network is unreachable", "temporary failure in name resolution", "no route to host"):
			return pipeline.Retryable(wrap(kind + " unavailable"))
		}
	}
	switch {
	case strings.Contains(lower, "moov atom not found"):
		if src.Local != "" && !looksLikeMP4(src.Local) {
			return pipeline.Poison(wrap("not a video file"))
		}
		return pipeline.Poison(wrap("truncated or corrupt MP4 (moov atom not found)"))
	case containsAny(lower, "invalid data found when processing input", "end of file",
		"does not contain any stream", "no such file or directory"):
		return pipeline.Poison(wrap("not a decodable video"))
	}
	if src.Local != "" && tool == "ffprobe" {
		// ffprobe failing on an existing regular file is about its content.
		return pipeline.Poison(wrap("not a decodable video"))
	}
	return wrap(tool + " failed")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// looksLikeMP4 tells a cut-off MP4 (which starts with an ftyp box) from a
// file that never was one, since ffmpeg reports both as a missing moov atom.
func looksLikeMP4(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [12]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false
	}
	return string(head[4:8]) == "ftyp"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
