// Package deploy holds the deployment trial's configuration — the
// Prometheus configuration in deploy/prometheus, the Grafana provisioning
// and the Mephisto dashboard in deploy/grafana — and, in its tests, the
// checks of it and of docker-compose.yml, the Dockerfile and .dockerignore
// at the repository root. There is no container engine where the tests
// run, so they check the files offline: the compose file against the
// worker's real command line (taken from the binary the Dockerfile's build
// line produces, run here), the addresses and ports against each other,
// the dashboard's queries against the metrics a running worker exports.
// The package has no code of its own.
package deploy
