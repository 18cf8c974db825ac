package files

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
)

func encode(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bomb returns a valid 1×1 PNG whose header claims w×h pixels.
func bomb(t *testing.T, w, h uint32) []byte {
	b := encode(t, "png", 1, 1)
	// IHDR: length (4), "IHDR" (4), width (4), height (4) from byte 8.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestThumbnail(t *testing.T) {
	for _, tc := range []struct {
		name, ct     string
		data         []byte
		w, h, tw, th int
		err          bool
	}{
		{name: "PNGLandscape", ct: "image/png", data: encode(t, "png", 640, 480), w: 640, h: 480, tw: 320, th: 240},
		{name: "JPEGPortrait", ct: "image/jpeg", data: encode(t, "jpeg", 300, 1200), w: 300, h: 1200, tw: 80, th: 320},
		{name: "GIFSmall", ct: "image/gif", data: encode(t, "gif", 100, 50), w: 100, h: 50, tw: 100, th: 50},
		{name: "ErrCorrupt", ct: "image/png", data: []byte("\x89PNG\r\n\x1a\n garbage"), err: true},
		{name: "ErrWrongFormat", ct: "image/gif", data: encode(t, "png", 10, 10), err: true},
		{name: "ErrBomb", ct: "image/png", data: bomb(t, 100000, 100000), err: true},
		{name: "ErrWebPGarbage", ct: "image/webp", data: []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, h, thumb, err := thumbnail(bytes.NewReader(tc.data), tc.ct, DefaultMaxPixels)
			if tc.err {
				if !errors.Is(err, errImage) {
					t.Fatalf("err = %v, want errImage", err)
				}
				return
			}
			if err != nil || w != tc.w || h != tc.h {
				t.Fatalf("thumbnail = %d×%d, %v", w, h, err)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(thumb))
			if err != nil || format != "jpeg" || cfg.Width != tc.tw || cfg.Height != tc.th {
				t.Fatalf("thumb %s %d×%d %v, want jpeg %d×%d", format, cfg.Width, cfg.Height, err, tc.tw, tc.th)
			}
		})
	}
}
