// Package defaults applies the documented defaults of the engines' options,
// whose zero values mean "the default" (STYLE.md: zero-value options with
// documented defaults).
package defaults

// Number is the kinds of option that Positive defaults: counts, sizes and
// time.Durations, and rates.
type Number interface {
	~int | ~int64 | ~float64
}

// Positive sets *v to def unless *v is above 0: an option of 0 (unset) or
// less takes its default.
func Positive[T Number](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
