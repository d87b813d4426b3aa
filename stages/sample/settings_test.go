package sample

import (
	"strings"
	"testing"

	"github.com/vidx/vidx/media"
	"github.com/vidx/vidx/schemas"
)

func TestSettings(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Settings)
		want   string // "" for valid
	}{
		{"defaults", func(*Settings) {}, ""},
		{"fps too high", func(s *Settings) { s.FPS = 60 }, "fps 60"},
		{"no frames", func(s *Settings) { s.MaxFrames = -1 }, "max_frames -1"},
		{"codec", func(s *Settings) { s.Codec = "webp" }, `codec "webp"`},
		{"quality", func(s *Settings) { s.Quality = 101 }, "quality 101"},
		{"window without width", func(s *Settings) { s.Mode = schemas.ModeWindow }, "WindowS"},
		{"window", func(s *Settings) { s.Mode, s.WindowS = schemas.ModeWindow, 4 }, ""},
		{"unknown mode", func(s *Settings) { s.Mode = "scenes" }, `Mode "scenes"`},
		{"shots threshold", func(s *Settings) { s.Mode, s.SceneThreshold = schemas.ModeShots, 2 }, "SceneThreshold"},
		{"shots", func(s *Settings) { s.Mode = schemas.ModeShots }, ""},
		{"one decoder thread", func(s *Settings) { s.DecodeThreads = 1 }, ""},
		{"negative decoder threads", func(s *Settings) { s.DecodeThreads = -1 }, "DecodeThreads -1"},
		{"always ffprobe", func(s *Settings) { s.Probe = media.ProbeFFprobe }, ""},
		{"unknown probe", func(s *Settings) { s.Probe = "mediainfo" }, `Probe "mediainfo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Settings{}.WithDefaults()
			tt.change(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestSettingsOptions checks the decoding options carry every setting and
// that defaults are the documented ones.
func TestSettingsOptions(t *testing.T) {
	s := Settings{}.WithDefaults()
	if s.FPS != 1 || s.MaxFrames != 12 || s.Mode != schemas.ModeWhole || s.Codec != schemas.CodecJPEG || s.Quality != 95 {
		t.Errorf("defaults %+v", s)
	}
	s = Settings{FPS: 2, MaxFrames: 8, Selection: schemas.SelectHead, Mode: schemas.ModeWindow, WindowS: 6, StrideS: 3,
		FFmpeg: "/opt/ffmpeg", FFprobe: "/opt/ffprobe"}.WithDefaults()
	o := s.Options()
	if o.FPS != 2 || o.MaxFrames != 8 || o.Selection != schemas.SelectHead || o.Mode != schemas.ModeWindow ||
		o.WindowS != 6 || o.StrideS != 3 || o.FFmpegPath != "/opt/ffmpeg" || o.FFprobePath != "/opt/ffprobe" || o.Timeout != s.Timeout {
		t.Errorf("options %+v from %+v", o, s)
	}
}
