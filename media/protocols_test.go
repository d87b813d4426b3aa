package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vidx/vidx/media/mediatest"
)

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStreamDecoderProtocols reads live RTMP and SRT streams, with ffmpeg
// itself as the server, through the whitelists and timeouts the decoder
// passes for them.
func TestStreamDecoderProtocols(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	mediatest.RealTime(t)
	protocols, err := exec.Command("ffmpeg", "-hide_banner", "-protocols").Output()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, format, serve, read string
		serverArgs                []string
	}{
		{"rtmp", "flv", "rtmp://127.0.0.1:%d/live/cam", "rtmp://127.0.0.1:%d/live/cam", []string{"-listen", "1"}},
		{"srt", "mpegts", "srt://127.0.0.1:%d?mode=listener", "srt://127.0.0.1:%d", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(protocols), " "+c.name+"\n") {
				t.Skipf("this ffmpeg has no %s protocol", c.name)
			}
			t.Parallel()
			network := "tcp"
			if c.name == "srt" {
				network = "udp"
			}
			port := freePort(t, network)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := []string{"-hide_banner", "-v", "error", "-re", "-f", "lavfi",
				"-i", "color=c=black:s=96x64:r=10:d=25,format=gbrp,geq=r='4*floor(T)':g=0:b=0",
				"-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-f", c.format}
			args = append(append(args, c.serverArgs...), fmt.Sprintf(c.serve, port))
			server := exec.CommandContext(ctx, "ffmpeg", args...)
			if err := server.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); _ = server.Wait() }()
			time.Sleep(500 * time.Millisecond) // let the server listen

			d := newTestStreamDecoder(t, StreamOptions{WindowS: 2, MaxFrames: 4, StallTimeout: 15 * time.Second})
			var sink windowSink
			done := make(chan error, 1)
			runCtx, stop := context.WithCancel(ctx)
			go func() {
				res, err := d.Run(runCtx, fmt.Sprintf(c.read, port), nil, sink.emit)
				if err == nil && !res.Live {
					err = fmt.Errorf("run %+v is not live", res)
				}
				done <- err
			}()
			wins := sink.waitWindows(t, 2, 25*time.Second)
			stop()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
			for _, w := range wins {
				if !w.Live || len(w.Frames) == 0 {
					t.Errorf("window %+v", w)
				}
			}
			if !contiguous(wins) {
				t.Errorf("windows %v", indices(wins))
			}
		})
	}
}
