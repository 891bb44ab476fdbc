package mephisto

// WebAddr returns the address the running worker's HTTP server listens on
// ("" when no worker runs or the server is disabled) — useful with port 0.
func (a *App) WebAddr() string {
	n := a.running()
	if n == nil {
		return ""
	}
	return n.WebAddr()
}

// Ready reports whether the running worker is ready, and if not, why.
func (a *App) Ready() (bool, string) {
	n := a.running()
	if n == nil {
		return false, "not running"
	}
	return n.Ready()
}
