// Package localapi is the agent's local status, update and enrollment API, served on
// ui_listen (loopback): its JSON types, its HTTP handler, and the one
// client every reader uses (the hubtunnel CLI, the self-updater's health
// check, the benchmarks and the end-to-end tests).
//
//	GET  /api/status          Status
//	POST /api/update/check    CheckResponse (200, or 502 when the check failed)
//	POST /api/update/install  InstallOptions in, InstallResponse out (202,
//	                          409 while another update runs, 422 refused)
//	POST /api/enroll          EnrollRequest in, EnrollResponse out (200, then
//	                          the agent restarts; 409 while another
//	                          enrollment runs, 422 refused)
//
// Every POST needs the agent's API token (TokenFile, 0600 next to its
// config: only root can read it) as "Authorization: Bearer <token>",
// compared in constant time; GET /api/status needs none and must never
// show a secret.
//
// The handler must never answer a request whose Host is not this machine
// by a loopback name or address (a page elsewhere could otherwise read or
// act through a DNS name rebound to 127.0.0.1), and never act on a POST
// without a JSON body (a form on another site cannot send one without
// asking first). It knows the agent only through the small Agent
// interface; it must not import package agent.
package localapi
