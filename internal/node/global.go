package node

// globalsPendingLocked says which global tables' copies are still catching
// up with their changelogs ("" when all are): a node is not ready before
// its copies are (rt.mu held).
func (rt *Node) globalsPendingLocked() string { return "" }
