//go:build !unix

package bench

// cpuTime is not measured where getrusage is missing.
type cpuTime struct{ self, children float64 }

func cpuNow() cpuTime                 { return cpuTime{} }
func (c cpuTime) sub(cpuTime) cpuTime { return c }
func (c cpuTime) String() string      { return "CPU time not measured on this OS" }
