package pipeline

// Middleware wraps a Handler with one cross-cutting concern (retries, dead
// letters, panics, metrics, tracing), so each can be read and tested on its
// own and the run loop stays fetch -> handler chain -> produce -> commit.
type Middleware func(Handler) Handler

// Chain wraps h in mws; the first middleware is the outermost, the one
// that sees a batch first and its results last.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
