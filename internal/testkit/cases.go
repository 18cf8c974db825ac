package testkit

import "testing"

// Case is one case of a table test: its name, the input and the result the
// test wants of it. A test with several inputs or results makes In or Want
// a struct of them.
type Case[In any, Want comparable] struct {
	Name string
	In   In
	Want Want
}

// RunCases runs each of cases as a subtest that fails when f of its input
// is not the result it wants; call names f in the failure.
func RunCases[In any, Want comparable](t *testing.T, call string, cases []Case[In, Want], f func(In) Want) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if got := f(tc.In); got != tc.Want {
				t.Fatalf("%s(%+v) = %+v, want %+v", call, tc.In, got, tc.Want)
			}
		})
	}
}
