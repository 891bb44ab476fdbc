// Package bridge lets the test driver (package mephistotest) run an App
// without the root package exporting its internals: the root package
// sets Attach at init.
package bridge

import (
	"github.com/mephistohq/mephisto/internal/node"
)

// Attach validates app (a *mephisto.App), makes rt the runtime its tables,
// topics and replies use outside handlers (as a running node is), and
// returns what the app declares and its configuration; detach undoes it.
// rt must implement the root package's runtime interface, the methods of
// *node.Node that the root package calls.
var Attach func(app, rt any) (spec node.Spec, cfg node.Config, detach func(), err error)
