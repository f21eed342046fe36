package panel

import (
	"net/http"
	"os"
	"strings"
)

// text is every string the panel shows, in one language; the page hands
// it to its script as JSON. english and german are the two; a test checks
// that neither leaves a field empty.
type text struct {
	// A func makes text not comparable, so the compiler writes no == for
	// it: one comparison per field, 5 KB of the agent's binary.
	_ [0]func()

	Lang string

	Title, Intro string

	// First run and enrollment.
	EnrollTitle, EnrollHelp, EnrollCode, EnrollButton, Enrolling, Enrolled string

	// Status.
	StatusTitle, HubName, Relay, URL, State, ConnectedSince, LastHandshake, LastError string
	Transport, Route, DNSSource, AgentVersion, Hub, Never                             string
	DNSNotNeeded                                                                      string
	StateConnected, StateConnecting, StateDisabled, StateUnenrolled                   string
	SupervisorRestarts                                                                string

	// Service.
	ServiceTitle, ServiceOn, ServiceHelp, Restart, Restarting, AgentGone string

	// Updates.
	UpdatesTitle, AutoUpdate, UpdateWindow, UpdateWindowHelp, CheckNow, Install string
	Checking, InstallingNow, Latest, UpToDate, Available, LastCheck, LastResult string
	ResultOK, ResultRolledBack, NoUpdater                                       string

	// Settings.
	SettingsTitle, SettingsHelp, Proxy, ProxyHelp, AllowedCIDRs, AllowedHelp string
	DNSFallback, DNSFallbackHelp, OptionalPorts, OptionalPortsHelp, Save     string
	Saved, Unchanged, NotSaved                                               string

	// Port map.
	PortsTitle, PortsHelp, PortCol, ServiceCol, HubCol, URLCol, NoURL string

	// Diagnostics.
	DiagTitle, DiagDNS, DiagConnect, Running, LogsTitle, LogsRefresh string

	// Statistics.
	StatsLink, StatsMissing string

	// Refusals.
	ErrNoSession, ErrInvalidSession, ErrRega, ErrOrigin, ErrBody, Refused string

	// Kinds says each localapi.Words kind the agent reports (last error,
	// update errors and results, diagnostics); the page adds the detail
	// in brackets, and shows the agent's English text for a kind missing
	// here. A relay's refusal with a code not listed is KindRelayRefused's.
	Kinds map[string]string
}

var english = text{
	Lang:  "en",
	Title: "hubtunnel", Intro: "Remote access to this hub through your relay.",

	EnrollTitle:  "Connect this hub",
	EnrollHelp:   "Paste the enrollment code your relay's portal showed you when you added this hub.",
	EnrollCode:   "Enrollment code",
	EnrollButton: "Connect",
	Enrolling:    "Connecting to the relay…",
	Enrolled:     "Enrolled. hubtunnel restarts to connect…",

	StatusTitle: "Status", HubName: "Hub", Relay: "Relay", URL: "Address", State: "State",
	ConnectedSince: "Connected since", LastHandshake: "Last handshake", LastError: "Last problem",
	Transport: "Connection", Route: "Route", DNSSource: "Relay address from", AgentVersion: "hubtunnel version",
	DNSNotNeeded: "no name to resolve: the relay is given by its address",
	Hub:          "This hub", Never: "never",
	StateConnected: "connected", StateConnecting: "connecting…", StateDisabled: "switched off",
	StateUnenrolled:    "not connected to a relay yet",
	SupervisorRestarts: "Restarts after a crash",

	ServiceTitle: "Service", ServiceOn: "Remote access on",
	ServiceHelp: "Off closes the tunnel; this page keeps working.",
	Restart:     "Restart hubtunnel", Restarting: "hubtunnel is restarting…",
	AgentGone: "hubtunnel does not answer (restarting?). Trying again…",

	UpdatesTitle: "Updates", AutoUpdate: "Install updates automatically", UpdateWindow: "Time window",
	UpdateWindowHelp: "Local time, e.g. 03:00-05:00.",
	CheckNow:         "Check now", Install: "Install update",
	Checking: "Checking…", InstallingNow: "Installing…", Latest: "Newest release", UpToDate: "up to date",
	Available: "available", LastCheck: "Last check", LastResult: "Last update",
	ResultOK: "installed", ResultRolledBack: "rolled back", NoUpdater: "Updates are not available for this installation.",

	SettingsTitle: "Settings", SettingsHelp: "Saved together, then hubtunnel restarts; the tunnel is back within seconds.",
	Proxy: "Proxy", ProxyHelp: "Empty: the system's; none: direct; or http://host:port",
	AllowedCIDRs: "Allowed sources", AllowedHelp: "Tunnel addresses that may reach the hub, one per line.",
	DNSFallback: "DNS fallback servers", DNSFallbackHelp: "Public resolvers asked when the router's DNS fails, one per line.",
	OptionalPorts: "Optional ports", OptionalPortsHelp: "Off by default.",
	Save: "Save", Saved: "Saved. hubtunnel restarts to apply it.", Unchanged: "Nothing changed.",
	NotSaved: "Not saved: see the marked field.",

	PortsTitle: "Ports", PortsHelp: "What the relay reaches on this hub.",
	PortCol: "Port", ServiceCol: "Service", HubCol: "On the hub", URLCol: "At the relay", NoURL: "—",

	DiagTitle: "Diagnostics", DiagDNS: "Resolve the relay's name", DiagConnect: "Test the connection",
	Running: "Running…", LogsTitle: "Log (last 200 lines)", LogsRefresh: "Refresh",

	StatsLink: "Data usage", StatsMissing: "The statistics are not available in this version.",

	ErrNoSession:      "Open this page with the hubtunnel button in the WebUI's control panel (Settings > Control panel): it needs your WebUI login.",
	ErrInvalidSession: "Your WebUI session has ended. Log in to the WebUI again and open hubtunnel from the control panel.",
	ErrRega:           "The CCU's script engine does not answer, so your login cannot be checked. Wait until the CCU has started completely, then reload this page.",
	ErrOrigin:         "Refused: this request did not come from the hubtunnel page.",
	ErrBody:           "Refused: the request is not readable.",
	Refused:           "Refused",

	Kinds: englishKinds,
}

var german = text{
	Lang:  "de",
	Title: "hubtunnel", Intro: "Fernzugriff auf diese Zentrale über Ihr Relay.",

	EnrollTitle:  "Zentrale verbinden",
	EnrollHelp:   "Fügen Sie den Anmeldecode ein, den das Portal Ihres Relays beim Hinzufügen dieser Zentrale angezeigt hat.",
	EnrollCode:   "Anmeldecode",
	EnrollButton: "Verbinden",
	Enrolling:    "Verbinde mit dem Relay…",
	Enrolled:     "Angemeldet. hubtunnel startet neu, um sich zu verbinden…",

	StatusTitle: "Status", HubName: "Zentrale", Relay: "Relay", URL: "Adresse", State: "Zustand",
	ConnectedSince: "Verbunden seit", LastHandshake: "Letzter Handshake", LastError: "Letztes Problem",
	Transport: "Verbindung", Route: "Weg", DNSSource: "Relay-Adresse von", AgentVersion: "hubtunnel-Version",
	DNSNotNeeded: "kein Name aufzulösen: das Relay ist mit seiner Adresse angegeben",
	Hub:          "Diese Zentrale", Never: "nie",
	StateConnected: "verbunden", StateConnecting: "verbinde…", StateDisabled: "ausgeschaltet",
	StateUnenrolled:    "noch mit keinem Relay verbunden",
	SupervisorRestarts: "Neustarts nach Absturz",

	ServiceTitle: "Dienst", ServiceOn: "Fernzugriff an",
	ServiceHelp: "Aus schließt den Tunnel; diese Seite bleibt erreichbar.",
	Restart:     "hubtunnel neu starten", Restarting: "hubtunnel startet neu…",
	AgentGone: "hubtunnel antwortet nicht (Neustart?). Neuer Versuch…",

	UpdatesTitle: "Updates", AutoUpdate: "Updates automatisch installieren", UpdateWindow: "Zeitfenster",
	UpdateWindowHelp: "Ortszeit, z. B. 03:00-05:00.",
	CheckNow:         "Jetzt prüfen", Install: "Update installieren",
	Checking: "Prüfe…", InstallingNow: "Installiere…", Latest: "Neueste Version", UpToDate: "aktuell",
	Available: "verfügbar", LastCheck: "Zuletzt geprüft", LastResult: "Letztes Update",
	ResultOK: "installiert", ResultRolledBack: "zurückgenommen", NoUpdater: "Updates sind für diese Installation nicht verfügbar.",

	SettingsTitle: "Einstellungen", SettingsHelp: "Werden zusammen gespeichert, dann startet hubtunnel neu; der Tunnel ist nach Sekunden wieder da.",
	Proxy: "Proxy", ProxyHelp: "Leer: der des Systems; none: direkt; oder http://host:port",
	AllowedCIDRs: "Erlaubte Quellen", AllowedHelp: "Tunnel-Adressen, die die Zentrale erreichen dürfen, eine pro Zeile.",
	DNSFallback: "DNS-Ausweichserver", DNSFallbackHelp: "Öffentliche Resolver, gefragt wenn das DNS des Routers versagt, einer pro Zeile.",
	OptionalPorts: "Zusätzliche Ports", OptionalPortsHelp: "Standardmäßig aus.",
	Save: "Speichern", Saved: "Gespeichert. hubtunnel startet neu, um es anzuwenden.", Unchanged: "Nichts geändert.",
	NotSaved: "Nicht gespeichert: siehe markiertes Feld.",

	PortsTitle: "Ports", PortsHelp: "Was das Relay auf dieser Zentrale erreicht.",
	PortCol: "Port", ServiceCol: "Dienst", HubCol: "Auf der Zentrale", URLCol: "Am Relay", NoURL: "—",

	DiagTitle: "Diagnose", DiagDNS: "Namen des Relays auflösen", DiagConnect: "Verbindung testen",
	Running: "Läuft…", LogsTitle: "Protokoll (letzte 200 Zeilen)", LogsRefresh: "Aktualisieren",

	StatsLink: "Datenverbrauch", StatsMissing: "Die Statistik gibt es in dieser Version nicht.",

	ErrNoSession:      "Öffnen Sie diese Seite mit der Schaltfläche hubtunnel in der Systemsteuerung der WebUI (Einstellungen > Systemsteuerung): sie braucht Ihre WebUI-Anmeldung.",
	ErrInvalidSession: "Ihre WebUI-Sitzung ist abgelaufen. Melden Sie sich neu an der WebUI an und öffnen Sie hubtunnel über die Systemsteuerung.",
	ErrRega:           "Die Logikschicht (ReGa) der Zentrale antwortet nicht, daher kann Ihre Anmeldung nicht geprüft werden. Warten Sie, bis die Zentrale ganz gestartet ist, und laden Sie die Seite neu.",
	ErrOrigin:         "Abgelehnt: diese Anfrage kam nicht von der hubtunnel-Seite.",
	ErrBody:           "Abgelehnt: die Anfrage ist nicht lesbar.",
	Refused:           "Abgelehnt",

	Kinds: germanKinds,
}

// germanFields say in German what each setting wants, for a value the
// agent refused (its own words, English, follow in brackets: they name the
// wrong value). English needs none: the agent's words are the message.
// The keys are Settings' JSON names and the enrollment's "code".
var germanFields = map[string]string{
	"enabled":        "Der Dienst lässt sich so nicht schalten.",
	"auto_update":    "Automatische Updates lassen sich so nicht schalten.",
	"update_window":  "Das Zeitfenster muss SS:MM-SS:MM sein, z. B. 03:00-05:00.",
	"proxy":          "Der Proxy muss leer, none oder http://host:port sein.",
	"allowed_cidrs":  "Erlaubte Quellen: eine Adresse oder ein Bereich pro Zeile, z. B. 100.96.0.1/32; mindestens einer.",
	"dns_fallback":   "DNS-Ausweichserver: eine IP-Adresse pro Zeile, z. B. 8.8.8.8.",
	"optional_ports": "Zuschalten lassen sich nur die Ports 90, 8001 und 8002.",
	"code":           "Dieser Code wurde nicht angenommen. Prüfen Sie ihn, oder holen Sie einen neuen im Portal des Relays.",
}

// fieldProblem is what the page shows next to field for problem, the
// agent's words, in t's language.
func (t *text) fieldProblem(field, problem string) string {
	if t.Lang == "de" {
		if de, ok := germanFields[field]; ok {
			return de + " (" + problem + ")"
		}
	}
	return problem
}

// text picks the language the CCU's WebUI is in (LanguageFile, which
// the WebUI's language dialog writes: "de" or "en"), else the browser's
// first choice of the two (Accept-Language), else English.
func (s *server) text(r *http.Request) *text {
	if b, err := os.ReadFile(s.cfg.LanguageFile); err == nil {
		switch strings.TrimSpace(string(b)) {
		case "de":
			return &german
		case "en":
			return &english
		}
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		lang, _, _ := strings.Cut(strings.ToLower(tag), "-")
		switch lang {
		case "de":
			return &german
		case "en":
			return &english
		}
	}
	return &english
}

var englishKinds = map[string]string{
	// Why the relay connection failed.
	"dns":                     "Cannot find the relay's address: the name does not resolve.",
	"refused":                 "The relay is not accepting connections (is it running?).",
	"unreachable":             "No route to the relay: is the hub's network up?",
	"timeout":                 "The relay did not answer in time.",
	"closed":                  "The relay closed the connection.",
	"reset":                   "The connection to the relay was reset.",
	"proxy":                   "The proxy did not let the connection through.",
	"tls-cert":                "The relay's TLS certificate is not valid for it.",
	"routes":                  "No way to the relay worked.",
	"relay-refused":           "The relay refused this hub.",
	"relay-refused:1":         "The relay does not speak this hubtunnel's protocol version: update hubtunnel.",
	"relay-refused:2":         "The relay is at capacity; hubtunnel tries again later.",
	"relay-refused:3":         "The relay's key in this hub's settings is wrong: enroll the hub again.",
	"relay-refused:4":         "The relay does not know this hub (not added yet, removed or switched off in its portal).",
	"relay-refused:5":         "Another device connects with this hub's key (a copy of this hub, e.g. a restored backup).",
	"not-found":               "The relay offers no updates (it has no releases).",
	"no-release-server":       "The relay has no update server.",
	"http-status":             "The update server answered with an error.",
	"fetch-failed":            "The update server could not be reached.",
	"bad-manifest":            "The release information is not usable.",
	"no-key":                  "This installation has no release key to check updates with.",
	"bad-signature":           "The release is not signed with the release key: refused.",
	"no-build":                "The newest release has no build for this hub.",
	"download-failed":         "The download failed.",
	"download-corrupt":        "The download is damaged: not installed.",
	"bad-binary":              "The new version does not run on this hub: not installed.",
	"no-space":                "Not enough free space on the hub for the update.",
	"busy":                    "Another update is running.",
	"already-running":         "This version is already installed.",
	"downgrade":               "That version is older than the one running: not installed.",
	"below-min-version":       "That version is too old for the relay's releases: not installed.",
	"min-version-unknown":     "The releases' oldest allowed version is unknown: not installed.",
	"installer-failed":        "The installer did not start.",
	"not-changed":             "The update failed; nothing was changed.",
	"rolled-back":             "rolled back",
	"rollback-failed":         "The new version failed and going back failed too: check the hub.",
	"rolled-back-down":        "Rolled back, but the previous version has not brought the tunnel up either.",
	"interrupted-rolled-back": "The update was interrupted: rolled back.",
	"interrupted-unchanged":   "The update was interrupted before it changed anything.",
	"interrupted-left":        "The update was interrupted; the installed program is neither version and was left as it is.",
	"unenrolled":              "This hub is not connected to a relay yet: enter an enrollment code first.",
	"by-address":              "The relay is given by its address: there is nothing to resolve.",
	"resolved":                "The relay's name resolves.",
	"no-address":              "No usable address for the relay's name.",
	"udp-no-test":             "The tunnel uses plain WireGuard over UDP: there is no connection to test; the state above shows whether the relay answers (an idle hub pings it every 25 s).",
	"reached":                 "Reached the relay.",
}

var germanKinds = map[string]string{
	"dns":                     "Die Adresse des Relays ist nicht zu finden: der Name lässt sich nicht auflösen.",
	"refused":                 "Das Relay nimmt keine Verbindungen an (läuft es?).",
	"unreachable":             "Kein Weg zum Relay: ist das Netzwerk der Zentrale verbunden?",
	"timeout":                 "Das Relay hat nicht rechtzeitig geantwortet.",
	"closed":                  "Das Relay hat die Verbindung geschlossen.",
	"reset":                   "Die Verbindung zum Relay wurde abgebrochen.",
	"proxy":                   "Der Proxy hat die Verbindung nicht durchgelassen.",
	"tls-cert":                "Das TLS-Zertifikat des Relays ist für das Relay nicht gültig.",
	"routes":                  "Keiner der Wege zum Relay hat funktioniert.",
	"relay-refused":           "Das Relay hat diese Zentrale abgelehnt.",
	"relay-refused:1":         "Das Relay spricht die Protokollversion dieses hubtunnel nicht: aktualisieren Sie hubtunnel.",
	"relay-refused:2":         "Das Relay ist ausgelastet; hubtunnel versucht es später wieder.",
	"relay-refused:3":         "Der Schlüssel des Relays in den Einstellungen dieser Zentrale ist falsch: melden Sie die Zentrale neu an.",
	"relay-refused:4":         "Das Relay kennt diese Zentrale nicht (noch nicht hinzugefügt, entfernt oder im Portal abgeschaltet).",
	"relay-refused:5":         "Ein anderes Gerät verbindet sich mit dem Schlüssel dieser Zentrale (eine Kopie, z. B. ein zurückgespieltes Backup).",
	"not-found":               "Das Relay bietet keine Updates an (es hat keine Versionen).",
	"no-release-server":       "Das Relay hat keinen Update-Server.",
	"http-status":             "Der Update-Server hat mit einem Fehler geantwortet.",
	"fetch-failed":            "Der Update-Server ist nicht erreichbar.",
	"bad-manifest":            "Die Angaben zur Version sind nicht brauchbar.",
	"no-key":                  "Diese Installation hat keinen Schlüssel, um Updates zu prüfen.",
	"bad-signature":           "Die Version ist nicht mit dem Release-Schlüssel signiert: abgelehnt.",
	"no-build":                "Die neueste Version gibt es für diese Zentrale nicht.",
	"download-failed":         "Der Download ist fehlgeschlagen.",
	"download-corrupt":        "Der Download ist beschädigt: nicht installiert.",
	"bad-binary":              "Die neue Version läuft auf dieser Zentrale nicht: nicht installiert.",
	"no-space":                "Auf der Zentrale ist nicht genug Platz für das Update.",
	"busy":                    "Ein anderes Update läuft gerade.",
	"already-running":         "Diese Version ist schon installiert.",
	"downgrade":               "Diese Version ist älter als die laufende: nicht installiert.",
	"below-min-version":       "Diese Version ist für die Versionen des Relays zu alt: nicht installiert.",
	"min-version-unknown":     "Die älteste erlaubte Version ist unbekannt: nicht installiert.",
	"installer-failed":        "Das Installationsprogramm ist nicht gestartet.",
	"not-changed":             "Das Update ist fehlgeschlagen; nichts wurde geändert.",
	"rolled-back":             "zurückgenommen",
	"rollback-failed":         "Die neue Version ist fehlgeschlagen und das Zurücknehmen auch: prüfen Sie die Zentrale.",
	"rolled-back-down":        "Zurückgenommen, aber auch die vorige Version baut den Tunnel nicht auf.",
	"interrupted-rolled-back": "Das Update wurde unterbrochen: zurückgenommen.",
	"interrupted-unchanged":   "Das Update wurde unterbrochen, bevor es etwas geändert hat.",
	"interrupted-left":        "Das Update wurde unterbrochen; das installierte Programm ist keine der beiden Versionen und bleibt, wie es ist.",
	"unenrolled":              "Diese Zentrale ist noch mit keinem Relay verbunden: geben Sie zuerst einen Anmeldecode ein.",
	"by-address":              "Das Relay ist mit seiner Adresse angegeben: es gibt nichts aufzulösen.",
	"resolved":                "Der Name des Relays lässt sich auflösen.",
	"no-address":              "Für den Namen des Relays gibt es keine brauchbare Adresse.",
	"udp-no-test":             "Der Tunnel nutzt WireGuard direkt über UDP: es gibt keine Verbindung zu testen; der Zustand oben zeigt, ob das Relay antwortet (eine ruhende Zentrale fragt es alle 25 s an).",
	"reached":                 "Relay erreicht.",
}
