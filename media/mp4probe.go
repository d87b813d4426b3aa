package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"strconv"

	"github.com/vidx/vidx/sourceguard"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/hevc"
	mp4 "github.com/abema/go-mp4"
)

// The probe of a local MP4 reads its moov box in-process instead of
// starting ffprobe: on a short video ffprobe's start-up alone (loading
// some two hundred shared libraries) costs about a tenth of a CPU-second,
// an eighth of what decoding the video costs. It reproduces the figures
// ffprobe reports for the layouts it accepts, following libavformat's mov
// demuxer: anything else (fragments, several edits, cover art, codecs
// other than H.264 and HEVC, odd cropping) is declined, and ffprobe
// answers as before. Tests hold both readings equal on generated files.

// errMP4Declined wraps why a file is left to ffprobe.
var errMP4Declined = errors.New("left to ffprobe")

func declinef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMP4Declined}, args...)...)
}

// movFormat is the name ffprobe gives its mov/mp4 demuxer: what a file
// that starts with an ftyp box always gets.
const movFormat = "mov,mp4,m4a,3gp,3g2,mj2"

// maxSttsDelta is libavformat's max_stts_delta default: larger sample
// durations are "corrected", which this reading does not follow.
const maxSttsDelta = math.MaxUint32 - 48000*10

// mp4Track is what the probe keeps of a trak box.
type mp4Track struct {
	handler   string
	entries   []string // sample entry types, in stsd order
	timescale uint32
	duration  uint64 // mdhd
	stts      []mp4.SttsEntry
	sttsBoxes int
	edits     *mp4.Elst
	elstBoxes int
	matrix    [9]int32
	sps       [][]byte // from avcC or hvcC
	hevc      bool
	samples   uint32 // stsz or stz2 sample count
	chunks    uint32 // stco or co64 entry count
	chapters  bool   // a tref/chap: chapter tracks can become cover images
}

// mp4Walk collects the boxes of one file.
type mp4Walk struct {
	r        io.ReadSeeker
	top      int // top-level boxes seen
	moovs    int
	mvhd     *mp4.Mvhd
	tracks   []*mp4Track
	declined error
}

// probeLocalMP4 reads a local source's headers: through the descriptor
// its Guard opened where there is one, so that what is read is what was
// checked.
func probeLocalMP4(src sourceguard.Source) (probed, error) {
	f := src.LocalFile()
	if f == nil {
		var err error
		if f, err = os.Open(src.Local); err != nil {
			return probed{}, declinef("%v", err)
		}
		defer f.Close()
	}
	st, err := f.Stat()
	if err != nil {
		return probed{}, declinef("%v", err)
	}
	return probeMP4(f, st.Size())
}

// probeMP4 reads the first video stream of the size bytes r holds as
// ffprobe would report it, or returns an error wrapping errMP4Declined.
func probeMP4(r io.ReaderAt, size int64) (p probed, err error) {
	// The box and parameter-set parsers meet whatever a file holds; a
	// panic in them leaves the file to ffprobe rather than ending the
	// stage.
	defer func() {
		if r := recover(); r != nil {
			p, err = probed{}, declinef("parsing panicked: %v", r)
		}
	}()
	// ReadAt leaves the file's shared offset alone. Unbuffered, the box
	// reader's field-by-field reads cost about 0.2 ms more a file, against
	// ffprobe's 100.
	w := &mp4Walk{r: io.NewSectionReader(r, 0, size)}
	if _, err := mp4.ReadBoxStructure(w.r, w.visit); err != nil {
		if w.declined != nil {
			return probed{}, w.declined
		}
		return probed{}, declinef("reading boxes: %v", err)
	}
	return w.result(size)
}

func (w *mp4Walk) decline(format string, args ...any) (any, error) {
	w.declined = declinef(format, args...)
	return nil, w.declined
}

func (w *mp4Walk) track() *mp4Track {
	if len(w.tracks) == 0 {
		return &mp4Track{} // a box outside any trak: kept nowhere
	}
	return w.tracks[len(w.tracks)-1]
}

func (w *mp4Walk) visit(h *mp4.ReadHandle) (any, error) {
	name := h.BoxInfo.Type.String()
	if len(h.Path) == 1 {
		w.top++
		switch {
		case w.top == 1 && name != "ftyp":
			return w.decline("file does not start with an ftyp box")
		case name == "moof" || name == "mfra":
			return w.decline("fragmented file")
		case name == "moov":
			if w.moovs++; w.moovs > 1 {
				return w.decline("more than one moov box")
			}
			return h.Expand()
		}
		return nil, nil
	}
	parent := h.Path[len(h.Path)-2].String()
	tr := w.track()
	switch name {
	case "mvex":
		return w.decline("fragmented file")
	case "covr":
		return w.decline("cover art")
	case "chap":
		tr.chapters = true
	case "trak":
		w.tracks = append(w.tracks, &mp4Track{})
		return h.Expand()
	case "edts", "mdia", "minf", "stbl", "stsd", "udta", "meta", "ilst", "tref":
		return h.Expand()
	case "stsz", "stz2":
		// Both keep the sample count at the same place; the sizes that
		// follow can run to megabytes and are not needed.
		n, err := w.uint32At(h.BoxInfo, 8)
		tr.samples = n
		return nil, err
	case "stco", "co64":
		n, err := w.uint32At(h.BoxInfo, 4)
		tr.chunks = n
		return nil, err
	case "mvhd", "tkhd", "elst", "mdhd", "hdlr", "stts", "avcC", "hvcC":
		if name == "hdlr" && parent != "mdia" {
			return nil, nil // a metadata handler, not the track's
		}
		b, _, err := h.ReadPayload()
		if err != nil {
			return nil, err
		}
		w.keep(tr, b)
	default:
		if parent == "stsd" {
			tr.entries = append(tr.entries, name)
			switch name {
			case "avc1", "avc3", "hvc1", "hev1":
				return h.Expand()
			}
		}
	}
	return nil, nil
}

// keep files what a box says in the walk or the track.
func (w *mp4Walk) keep(tr *mp4Track, box mp4.IBox) {
	switch b := box.(type) {
	case *mp4.Mvhd:
		w.mvhd = b
	case *mp4.Tkhd:
		tr.matrix = b.Matrix
	case *mp4.Elst:
		tr.elstBoxes++
		tr.edits = b
	case *mp4.Mdhd:
		tr.timescale, tr.duration = b.Timescale, b.GetDuration()
	case *mp4.Hdlr:
		tr.handler = string(b.HandlerType[:])
	case *mp4.Stts:
		tr.sttsBoxes++
		tr.stts = b.Entries
	case *mp4.AVCDecoderConfiguration:
		for _, ps := range b.SequenceParameterSets {
			tr.sps = append(tr.sps, ps.NALUnit)
		}
	case *mp4.HvcC:
		tr.hevc = true
		for _, a := range b.NaluArrays {
			if a.NaluType == hevcSPSType {
				for _, n := range a.Nalus {
					tr.sps = append(tr.sps, n.NALUnit)
				}
			}
		}
	}
}

// hevcSPSType is the NAL unit type of an HEVC sequence parameter set.
const hevcSPSType = 33

// uint32At reads the big-endian word off bytes into a box's payload.
func (w *mp4Walk) uint32At(bi mp4.BoxInfo, off uint64) (uint32, error) {
	if bi.Size < bi.HeaderSize+off+4 {
		return 0, fmt.Errorf("%s box too short", bi.Type)
	}
	if _, err := w.r.Seek(int64(bi.Offset+bi.HeaderSize+off), io.SeekStart); err != nil {
		return 0, err
	}
	var b [4]byte
	if _, err := io.ReadFull(w.r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// result turns the boxes into what ffprobe reports for the first video
// stream.
func (w *mp4Walk) result(size int64) (probed, error) {
	if w.moovs != 1 || w.mvhd == nil {
		return probed{}, declinef("no moov box with an mvhd")
	}
	movieScale, movieDur := w.mvhd.Timescale, w.mvhd.GetDuration()
	if movieScale == 0 || movieScale > math.MaxInt32 || movieDur == 0 || movieDur > math.MaxInt64 {
		return probed{}, declinef("mvhd time scale %d, duration %d", movieScale, movieDur)
	}
	var video *mp4Track
	for i, tr := range w.tracks {
		if tr.chapters {
			return probed{}, declinef("chapter track reference")
		}
		if video != nil {
			continue
		}
		switch tr.handler {
		case "soun": // never a video stream, whatever its codec
		case "vide":
			video = tr
		default:
			// libavformat makes a track of another handler a video stream
			// when its sample entry names a video codec.
			return probed{}, declinef("track %d has handler %q", i, tr.handler)
		}
	}
	if video == nil {
		return probed{}, declinef("no video track")
	}
	p := probed{format: movFormat}
	var err error
	if p.Codec, p.Width, p.Height, err = video.frameSize(); err != nil {
		return probed{}, err
	}
	if p.DurationS, p.FPS, err = video.timing(movieScale); err != nil {
		return probed{}, err
	}
	swap, err := quarterTurn(video.matrix, w.mvhd.Matrix)
	if err != nil {
		return probed{}, err
	}
	if swap {
		p.Width, p.Height = p.Height, p.Width
	}
	// The container duration, and from it the file's bit rate, come from
	// mvhd, in microseconds rounded to nearest.
	us, ok := rescale(movieDur, 1_000_000, uint64(movieScale))
	if !ok || us == 0 || us > math.MaxInt64 {
		return probed{}, declinef("mvhd duration %d out of range", movieDur)
	}
	if size > 0 {
		if br := float64(size) * 8.0 * 1_000_000 / float64(us); br <= math.MaxInt64 {
			p.BitRate = float64(int64(br))
		}
	}
	return p, nil
}

// frameSize is the codec and the decoded frame size its sequence
// parameter set gives, as the decoder reports it.
func (tr *mp4Track) frameSize() (string, int, int, error) {
	if len(tr.entries) != 1 {
		return "", 0, 0, declinef("%d sample descriptions", len(tr.entries))
	}
	e := tr.entries[0]
	isAVC, isHEVC := e == "avc1" || e == "avc3", e == "hvc1" || e == "hev1"
	switch {
	case !isAVC && !isHEVC:
		return "", 0, 0, declinef("sample entry %s", e)
	case len(tr.sps) != 1:
		return "", 0, 0, declinef("%d sequence parameter sets", len(tr.sps))
	}
	codec, w, h, err := tr.parseSPS(isAVC)
	if err != nil {
		return "", 0, 0, err
	}
	if w <= 0 || h <= 0 {
		return "", 0, 0, declinef("frame size %dx%d", w, h)
	}
	return codec, w, h, nil
}

func (tr *mp4Track) parseSPS(isAVC bool) (string, int, int, error) {
	switch {
	case isAVC && !tr.hevc:
		sps, err := avc.ParseSPSNALUnit(tr.sps[0], false)
		if err != nil {
			return "", 0, 0, declinef("H.264 SPS: %v", err)
		}
		// ffmpeg's decoder treats left or top cropping, and 4:4:4 with
		// separate planes, in ways this reading does not follow.
		if sps.FrameCropLeftOffset != 0 || sps.FrameCropTopOffset != 0 || sps.ChromaFormatIDC == 3 {
			return "", 0, 0, declinef("H.264 cropping or chroma format outside the common case")
		}
		return "h264", int(sps.Width), int(sps.Height), nil
	case !isAVC && tr.hevc:
		sps, err := hevc.ParseSPSNALUnit(tr.sps[0])
		if err != nil {
			return "", 0, 0, declinef("HEVC SPS: %v", err)
		}
		if sps.ConformanceWindow.LeftOffset != 0 || sps.ConformanceWindow.TopOffset != 0 || sps.ChromaFormatIDC == 3 {
			return "", 0, 0, declinef("HEVC cropping or chroma format outside the common case")
		}
		w, h := sps.ImageSize()
		return "hevc", int(w), int(h), nil
	default:
		return "", 0, 0, declinef("sample entry %s with a configuration of the other codec", tr.entries[0])
	}
}

// timing is the stream's duration in seconds, as ffprobe prints it, and
// its average frame rate. libavformat takes the smallest of the media
// header's duration, the sum of the sample durations and the edit's span.
func (tr *mp4Track) timing(movieScale uint32) (float64, float64, error) {
	if tr.timescale == 0 || tr.timescale > math.MaxInt32 {
		return 0, 0, declinef("mdhd time scale %d", tr.timescale)
	}
	if tr.sttsBoxes != 1 || tr.elstBoxes > 1 {
		return 0, 0, declinef("repeated stts or elst boxes")
	}
	var sum, count uint64
	for _, e := range tr.stts {
		if e.SampleDelta > maxSttsDelta {
			return 0, 0, declinef("sample duration %d", e.SampleDelta)
		}
		sum += uint64(e.SampleCount) * uint64(e.SampleDelta)
		count += uint64(e.SampleCount)
	}
	switch {
	case sum == 0 || sum > math.MaxInt64/2 || count > math.MaxInt32:
		return 0, 0, declinef("sample table sums to %d ticks over %d samples", sum, count)
	case uint64(tr.samples) != count || tr.chunks == 0:
		return 0, 0, declinef("sample table counts disagree (%d timed, %d sized, %d chunks)", count, tr.samples, tr.chunks)
	case tr.duration == 0 || tr.duration > math.MaxInt64:
		return 0, 0, declinef("mdhd duration %d", tr.duration)
	}
	dur := min(tr.duration, sum)
	edits := 0
	if tr.edits != nil {
		edits = len(tr.edits.Entries)
	}
	switch edits {
	case 0:
	case 1:
		e := tr.edits.Entries[0]
		media, span := tr.edits.GetMediaTime(0), tr.edits.GetSegmentDuration(0)
		if media < 0 || e.MediaRateInteger != 1 || e.MediaRateFraction != 0 || media > math.MaxInt32 {
			return 0, 0, declinef("edit at media time %d, rate %d", media, e.MediaRateInteger)
		}
		ticks, ok := rescale(span, uint64(tr.timescale), uint64(movieScale))
		if !ok || ticks == 0 || ticks > math.MaxInt64/2 {
			return 0, 0, declinef("edit span %d", span)
		}
		dur = min(dur, ticks)
	default:
		return 0, 0, declinef("%d edits", edits)
	}
	// ffprobe prints seconds with six decimals; rounding the same way
	// gives the same number.
	s, err := strconv.ParseFloat(strconv.FormatFloat(float64(dur)*(1/float64(tr.timescale)), 'f', 6, 64), 64)
	if err != nil {
		return 0, 0, declinef("duration: %v", err)
	}
	num, den := reduce(int64(tr.timescale)*int64(count), int64(sum), math.MaxInt32)
	return s, float64(num) / float64(den), nil
}

// quarterTurn says whether the track's display matrix, after the movie's,
// turns the picture by 90 or 270 degrees, which ffmpeg applies while
// decoding. Matrices other than quarter turns and flips are declined.
func quarterTurn(track, movie [9]int32) (bool, error) {
	var m [9]int64
	shift := [3]uint{16, 16, 30}
	for i := range 3 {
		for j := range 3 {
			var v int64
			for e := range 3 {
				v += int64(track[i*3+e]) * int64(movie[e*3+j]) >> shift[e]
			}
			m[i*3+j] = int64(int32(v))
		}
	}
	switch {
	case m[1] == 0 && m[3] == 0 && m[0] != 0 && m[4] != 0:
		return false, nil
	case m[0] == 0 && m[4] == 0 && m[1] != 0 && m[3] != 0:
		return true, nil
	}
	return false, declinef("display matrix %v", m)
}

// rescale is a*b/c rounded to nearest, halves away from zero, as
// libavutil's av_rescale; ok is false when it does not fit 64 bits.
func rescale(a, b, c uint64) (uint64, bool) {
	hi, lo := bits.Mul64(a, b)
	lo, carry := bits.Add64(lo, c/2, 0)
	hi += carry
	if hi >= c {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, c)
	return q, true
}

// reduce is libavutil's av_reduce for positive num and den: the fraction
// in lowest terms, or its closest approximation with both terms at most
// max.
func reduce(num, den, max int64) (int64, int64) {
	g := gcd(num, den)
	if g > 0 {
		num, den = num/g, den/g
	}
	if num <= max && den <= max {
		return num, den
	}
	a0n, a0d, a1n, a1d := int64(0), int64(1), int64(1), int64(0)
	for den != 0 {
		x := num / den
		next := num - den*x
		a2n, a2d := x*a1n+a0n, x*a1d+a0d
		if a2n > max || a2d > max {
			if a1n != 0 {
				x = (max - a0n) / a1n
			}
			if a1d != 0 {
				x = min(x, (max-a0d)/a1d)
			}
			if den*(2*x*a1d+a0d) > num*a1d {
				a1n, a1d = x*a1n+a0n, x*a1d+a0d
			}
			break
		}
		a0n, a0d, a1n, a1d = a1n, a1d, a2n, a2d
		num, den = den, next
	}
	return a1n, a1d
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
