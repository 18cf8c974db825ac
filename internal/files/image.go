package files

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // registers GIF
	"image/jpeg"
	_ "image/png" // registers PNG
	"io"

	_ "golang.org/x/image/webp" // registers WebP (decode only)
)

// Image limits.
const (
	// ThumbnailMax is the largest side of a thumbnail, in pixels.
	ThumbnailMax = 320
	// DefaultMaxPixels bounds width × height of an image that is decoded
	// (a decompression bomb declares a huge size in a small file): 50
	// megapixels.
	DefaultMaxPixels = 50_000_000
)

// imageTypes are the content types whose uploads are decoded as images.
var imageTypes = map[string]string{"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}

// IsImage reports whether contentType is one of the image types that get a
// thumbnail: JPEG, PNG, GIF and WebP.
func IsImage(contentType string) bool { _, ok := imageTypes[contentType]; return ok }

// errImage is an image that cannot be decoded or is too large.
var errImage = errors.New("files: bad image")

// thumbnail reads an image of contentType from r and returns its width and
// height and a JPEG thumbnail whose larger side is at most ThumbnailMax. The
// header is checked first (image.DecodeConfig): an image of more than
// maxPixels pixels, or not of the declared format, is refused before it is
// decoded.
func thumbnail(r io.ReadSeeker, contentType string, maxPixels int64) (w, h int, thumb []byte, err error) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("%w: not a valid %s image", errImage, contentType)
	}
	if format != imageTypes[contentType] {
		return 0, 0, nil, fmt.Errorf("%w: content is %s, not %s", errImage, format, contentType)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return 0, 0, nil, fmt.Errorf("%w: %d×%d pixels is more than the limit of %d", errImage, cfg.Width, cfg.Height, maxPixels)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return 0, 0, nil, err
	}
	img, _, err := image.Decode(r)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("%w: not a valid %s image", errImage, contentType)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, scale(img, ThumbnailMax), &jpeg.Options{Quality: 80}); err != nil {
		return 0, 0, nil, err
	}
	return cfg.Width, cfg.Height, buf.Bytes(), nil
}

// scale returns img shrunk so that its larger side is at most max pixels,
// each target pixel the average of the source pixels it covers (a box
// filter); an image that fits is returned as it is.
func scale(img image.Image, max int) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= max && sh <= max {
		return img
	}
	dw, dh := max, sh*max/sw
	if sh > sw {
		dw, dh = sw*max/sh, max
	}
	dw, dh = maxInt(dw, 1), maxInt(dh, 1)
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		y0, y1 := b.Min.Y+y*sh/dh, b.Min.Y+maxInt((y+1)*sh/dh, y*sh/dh+1)
		for x := 0; x < dw; x++ {
			x0, x1 := b.Min.X+x*sw/dw, b.Min.X+maxInt((x+1)*sw/dw, x*sw/dw+1)
			var r, g, bl, a, n uint64
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					cr, cg, cb, ca := img.At(sx, sy).RGBA()
					r, g, bl, a, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), a+uint64(ca), n+1
				}
			}
			i := dst.PixOffset(x, y)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = uint8(r/n>>8), uint8(g/n>>8), uint8(bl/n>>8), uint8(a/n>>8)
		}
	}
	return dst
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
