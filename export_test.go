package mephisto

// WithFaultHook calls f at each named point of the commit protocol (the
// points MEPHISTO_FAULTPOINT names), on the goroutine that reaches it: a
// test can block there to make something happen mid-commit.
func WithFaultHook(f func(point string)) Option { return func(c *Config) { c.crash = f } }
