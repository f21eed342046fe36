package portal

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/hubtunnel/hubtunnel/store"
)

// text is every string a page shows, in one language. english and german
// are the two; a test checks that neither leaves a field empty.
type text struct {
	Lang string // the html lang attribute

	// Titles.
	TitleLogin, TitleCode, TitleLogout, TitleLoggedOut, TitleHome, TitleTOTP string
	TitleError, TitleNotFound, TitleForbidden                                string

	// Login, logout.
	LoggedInAs, Logout, UserName, Password, LoginButton, Code, CodeHelp string
	LoginAgain, LogoutConfirm, BackHome, LoggedOutText                  string

	// TOTP.
	TOTPIsOn, TOTPIsOff, TOTPOffCode, TOTPOff, TOTPOn, TOTPStep1, TOTPStep2 string
	TOTPSecretText, TOTPManage                                              string

	// Home.
	MyHubs, Hub, State, LastSeen, AgentVersion, Model, Firmware, Online, Offline, Never, NoHubs string
	GrantedToMe, Owner, Access, Until, NoEnd, Expired, NoGranted                                string
	Grants, Revoke, NoGrants, GrantTitle, ScriptHint, UntilHint, GrantButton                    string
	PortWebUI, PortXMLRPC, PortScript                                                           string
	Tokens, TokensHint, Label, MadeBy, Created, LastUsed, Expires, Operator, NoTokens           string
	TokenTitle, ExpiresHint, TokenButton, Token                                                 string
	NewTokenTitle, NewTokenOnce, Copy, TokenCCUAuth                                             string
	Account, Sessions, From, ThisSession                                                        string
	Audit, When, What, Who, Port, Outcome, Detail, Bytes, NoAudit                               string

	// Adding a hub.
	AddHub, AddHubHint, HubName, HubNameHint, AddHubButton                  string
	NewCodeTitle, NewCodeOnce, NewCodeValid, NewCodeWorksOnce, NewCodeAddon string
	NewCodeQR, NewCodeCommand, NewCodeDone                                  string
	Waiting, WaitingCode, WaitingConnect, WaitingHint, Withdraw             string

	// The copy-paste lines of a new token.
	LinePython, LinePythonNoDNS, LineCurl, LineHomeAssistant, LineIoBroker  string
	LineWebUI, LineScript                                                   string
	IOBAddress, IOBPort, IOBDaemon, IOBProtocol, IOBHTTPS, IOBUser, IOBPass string

	// Audit kinds.
	KindLogin, KindLogout, KindSession, KindGrant, KindRevoke, KindToken     string
	KindHubConnect, KindHubGone, KindTOTP, KindEnroll, KindClone, KindHubKey string

	// Messages.
	ErrInternal, ErrNotFound, ErrForbidden, ErrBadForm                                string
	ErrBadLogin, ErrDisabled, ErrAccountLocked, ErrTooManyFromAddress                 string
	ErrBadCode, ErrLoginExpired, ErrEnrolExpired                                      string
	ErrNotYourHub, ErrNoPorts, ErrBadTime, ErrPastTime, ErrGrantSelf, ErrNoSuchUser   string
	ErrNoSuchGrant, ErrTokenNotAllowed, ErrNoSuchToken, ErrNoSuchSession, ErrBadLabel string
	OkGrant, OkGrantRevoked, OkTokenRevoked, OkSessionRevoked, OkTOTPOn, OkTOTPOff    string
	ErrHubName, ErrHubNameTaken, ErrTooManyCodes, ErrNoSuchCode, OkCodeWithdrawn      string
}

var english = text{
	Lang: "en",

	TitleLogin:     "Log in",
	TitleCode:      "Log in: code",
	TitleLogout:    "Log out",
	TitleLoggedOut: "Logged out",
	TitleHome:      "Your hubs",
	TitleTOTP:      "Two-step login",
	TitleError:     "Something went wrong",
	TitleNotFound:  "Not found",
	TitleForbidden: "Not sent",

	LoggedInAs:    "Logged in as",
	Logout:        "Log out",
	UserName:      "User name",
	Password:      "Password",
	LoginButton:   "Log in",
	Code:          "Code from your authenticator app (6 digits)",
	CodeHelp:      "Your account asks for a second step: enter the code your authenticator app shows for hubtunnel.",
	LoginAgain:    "Log in again",
	LogoutConfirm: "Log out of the relay? This ends your login on every hub you opened with it.",
	BackHome:      "Back to your hubs",
	LoggedOutText: "You are logged out. Your hubs can no longer be reached with this login.",

	TOTPIsOn:       "Two-step login is on: logging in asks for a code from your authenticator app.",
	TOTPIsOff:      "Two-step login is off: logging in asks only for your password.",
	TOTPOffCode:    "To turn it off, enter a current code from your authenticator app",
	TOTPOff:        "Turn two-step login off",
	TOTPOn:         "Turn two-step login on",
	TOTPStep1:      "Scan the QR code with an authenticator app (for example Aegis, FreeOTP, Google Authenticator), or type in the key below it.",
	TOTPStep2:      "Enter the code the app shows, to confirm.",
	TOTPSecretText: "Key for typing in:",
	TOTPManage:     "Manage two-step login",

	MyHubs:       "My hubs",
	Hub:          "Hub",
	State:        "State",
	LastSeen:     "Last seen",
	AgentVersion: "hubtunnel version",
	Model:        "Model",
	Firmware:     "Firmware",
	Online:       "online",
	Offline:      "offline",
	Never:        "never",
	NoHubs:       "You own no hubs on this relay.",
	GrantedToMe:  "Hubs shared with me",
	Owner:        "Owner",
	Access:       "Access",
	Until:        "Until",
	NoEnd:        "no end",
	Expired:      "expired",
	NoGranted:    "Nobody has shared a hub with you.",
	Grants:       "Who else may reach my hubs",
	Revoke:       "Revoke",
	NoGrants:     "Nobody else may reach your hubs.",
	GrantTitle:   "Share a hub",
	ScriptHint:   "The script engine can do everything on the hub, as its administrator: share it only with people you trust with that.",
	UntilHint:    "Leave empty for no end. Access ends at this time, open connections too.",
	GrantButton:  "Share",
	PortWebUI:    "WebUI",
	PortXMLRPC:   "XML-RPC (apps)",
	PortScript:   "script engine",
	Tokens:       "App tokens",
	TokensHint:   "Apps that cannot show a login page (Home Assistant, ioBroker, scripts) carry a token instead of your password. A token reaches one hub, never more than you may.",
	Label:        "Label",
	MadeBy:       "Made by",
	Created:      "Created",
	LastUsed:     "Last used",
	Expires:      "Expires",
	Operator:     "relay operator",
	NoTokens:     "No app tokens.",
	TokenTitle:   "Make an app token",
	ExpiresHint:  "Leave empty for a token that works until you revoke it.",
	TokenButton:  "Make token",
	Token:        "token",

	NewTokenTitle: "Your new app token",
	NewTokenOnce:  "Copy it now: it is shown only this once. Whoever has it reaches the hub as the token allows, until you revoke it.",
	Copy:          "Copy",
	TokenCCUAuth:  "If the hub's own authentication is on (Settings > Control panel > Security), use the hub's user name as the user name and the token, a colon and that user's hub password as the password.",

	Account:     "My account",
	Sessions:    "Where I am logged in",
	From:        "From",
	ThisSession: "this browser",

	Audit:   "What happened on my hubs",
	When:    "When",
	What:    "What",
	Who:     "Who",
	Port:    "Port",
	Outcome: "Outcome",
	Detail:  "Detail",
	Bytes:   "Bytes",
	NoAudit: "Nothing recorded yet.",

	AddHub:           "Add a hub",
	AddHubHint:       "Name the hub, and you get a one-time code. Enter it on the hub and it joins this relay as yours: nothing else to type.",
	HubName:          "Name of the hub",
	HubNameHint:      "Lower-case letters, digits and '-', for example garage. It becomes the hub's address:",
	AddHubButton:     "Get a code",
	NewCodeTitle:     "Enrollment code for hub",
	NewCodeOnce:      "Shown only this once: copy it or write it down now. If you lose it, withdraw it below and get a new one.",
	NewCodeValid:     "Valid until",
	NewCodeWorksOnce: "works once",
	NewCodeAddon:     "On the hub: open Settings > Control panel > hubtunnel and paste the code there.",
	NewCodeQR:        "Or scan it with your phone, then paste it on the hub's hubtunnel page.",
	NewCodeCommand:   "Or on the hub's command line:",
	NewCodeDone:      "Done: back to my hubs. The hub shows there once it has enrolled.",
	Waiting:          "Waiting for enrollment",
	WaitingCode:      "waiting for its code",
	WaitingConnect:   "enrolled, waiting for it to connect",
	WaitingHint:      "This page looks again every 5 seconds.",
	Withdraw:         "Withdraw",

	LinePython:        "Python (xmlrpc.client)",
	LinePythonNoDNS:   "Python, with the relay's own name (where NAME.domain does not resolve)",
	LineCurl:          "curl",
	LineHomeAssistant: "Home Assistant, HomeMatic integration (configuration.yaml)",
	LineIoBroker:      "ioBroker, hm-rpc adapter (instance settings)",
	LineWebUI:         "WebUI with curl",
	LineScript:        "Script engine with curl",
	IOBAddress:        "HomeMatic address",
	IOBPort:           "HomeMatic port",
	IOBDaemon:         "Daemon",
	IOBProtocol:       "Protocol",
	IOBHTTPS:          "Use https",
	IOBUser:           "Username",
	IOBPass:           "Password",

	KindLogin:      "login",
	KindLogout:     "logout",
	KindSession:    "use",
	KindGrant:      "shared",
	KindRevoke:     "revoked",
	KindToken:      "token made",
	KindHubConnect: "hub online",
	KindHubGone:    "hub offline",
	KindTOTP:       "two-step login",
	KindEnroll:     "enrollment",
	KindClone:      "copy of the hub refused",
	KindHubKey:     "hub key replaced",

	ErrInternal:           "The relay could not do this just now. Try again in a moment; if it keeps happening, tell the relay's operator.",
	ErrNotFound:           "There is no page at this address.",
	ErrForbidden:          "This form was out of date or came from another site, so nothing was changed. Reload the page and try again.",
	ErrBadForm:            "The form could not be read. Reload the page and try again.",
	ErrBadLogin:           "Wrong user name or password.",
	ErrDisabled:           "This account is disabled. Ask the relay's operator.",
	ErrAccountLocked:      "Too many failed logins for this account. Try again in 15 minutes.",
	ErrTooManyFromAddress: "Too many failed logins from your network. Try again in 15 minutes.",
	ErrBadCode:            "That code is not right. Codes work once and change every 30 seconds: check your phone's time and enter the current one.",
	ErrLoginExpired:       "This login took too long or had too many wrong codes. Log in again.",
	ErrEnrolExpired:       "That took too long: scan this new QR code and enter its code.",
	ErrNotYourHub:         "You can only do this for hubs you own.",
	ErrNoPorts:            "Choose at least one of WebUI, XML-RPC and script engine.",
	ErrBadTime:            "The time could not be read. Pick a date and time, or leave it empty.",
	ErrPastTime:           "That time has passed. Pick one in the future, or leave it empty.",
	ErrGrantSelf:          "You own this hub already.",
	ErrNoSuchUser:         "There is no user of that name on this relay.",
	ErrNoSuchGrant:        "That user had no access to this hub.",
	ErrTokenNotAllowed:    "You can only make tokens for hubs and parts you may reach yourself.",
	ErrNoSuchToken:        "There is no such token of yours.",
	ErrNoSuchSession:      "There is no such login of yours.",
	ErrBadLabel:           "A label is at most 64 characters of ordinary text.",
	OkGrant:               "Shared.",
	OkGrantRevoked:        "Access revoked. Open connections of that user were ended.",
	OkTokenRevoked:        "Token revoked. Apps using it were cut off.",
	OkSessionRevoked:      "That login was ended.",
	OkTOTPOn:              "Two-step login is on.",
	OkTOTPOff:             "Two-step login is off.",
	ErrHubName:            "A hub's name is lower-case letters, digits and '-' (at most 63, not starting or ending with '-'), for example garage.",
	ErrHubNameTaken:       "That name is taken: a hub has it, or a code for it is waiting. Pick another name, or withdraw the waiting code.",
	ErrTooManyCodes:       "You have 5 codes waiting to be used. Use or withdraw one before you get another.",
	ErrNoSuchCode:         "There is no waiting code of yours for that hub.",
	OkCodeWithdrawn:       "Code withdrawn: it no longer works.",
}

var german = text{
	Lang: "de",

	TitleLogin:     "Anmelden",
	TitleCode:      "Anmelden: Code",
	TitleLogout:    "Abmelden",
	TitleLoggedOut: "Abgemeldet",
	TitleHome:      "Ihre Zentralen",
	TitleTOTP:      "Anmeldung in zwei Schritten",
	TitleError:     "Etwas ist schiefgegangen",
	TitleNotFound:  "Nicht gefunden",
	TitleForbidden: "Nicht gesendet",

	LoggedInAs:    "Angemeldet als",
	Logout:        "Abmelden",
	UserName:      "Benutzername",
	Password:      "Passwort",
	LoginButton:   "Anmelden",
	Code:          "Code aus Ihrer Authenticator-App (6 Ziffern)",
	CodeHelp:      "Ihr Konto verlangt einen zweiten Schritt: Geben Sie den Code ein, den Ihre Authenticator-App für hubtunnel zeigt.",
	LoginAgain:    "Erneut anmelden",
	LogoutConfirm: "Vom Relay abmelden? Das beendet Ihre Anmeldung auch bei allen Zentralen, die Sie damit geöffnet haben.",
	BackHome:      "Zurück zu Ihren Zentralen",
	LoggedOutText: "Sie sind abgemeldet. Mit dieser Anmeldung sind Ihre Zentralen nicht mehr erreichbar.",

	TOTPIsOn:       "Anmeldung in zwei Schritten ist an: Beim Anmelden wird ein Code aus Ihrer Authenticator-App abgefragt.",
	TOTPIsOff:      "Anmeldung in zwei Schritten ist aus: Beim Anmelden wird nur Ihr Passwort abgefragt.",
	TOTPOffCode:    "Zum Ausschalten einen aktuellen Code aus Ihrer Authenticator-App eingeben",
	TOTPOff:        "Zwei Schritte ausschalten",
	TOTPOn:         "Zwei Schritte einschalten",
	TOTPStep1:      "Scannen Sie den QR-Code mit einer Authenticator-App (zum Beispiel Aegis, FreeOTP, Google Authenticator) oder tippen Sie den Schlüssel darunter ab.",
	TOTPStep2:      "Geben Sie zur Bestätigung den Code ein, den die App zeigt.",
	TOTPSecretText: "Schlüssel zum Abtippen:",
	TOTPManage:     "Anmeldung in zwei Schritten verwalten",

	MyHubs:       "Meine Zentralen",
	Hub:          "Zentrale",
	State:        "Zustand",
	LastSeen:     "Zuletzt gesehen",
	AgentVersion: "hubtunnel-Version",
	Model:        "Modell",
	Firmware:     "Firmware",
	Online:       "online",
	Offline:      "offline",
	Never:        "nie",
	NoHubs:       "Ihnen gehören keine Zentralen auf diesem Relay.",
	GrantedToMe:  "Für mich freigegebene Zentralen",
	Owner:        "Besitzer",
	Access:       "Zugriff",
	Until:        "Bis",
	NoEnd:        "unbegrenzt",
	Expired:      "abgelaufen",
	NoGranted:    "Niemand hat eine Zentrale für Sie freigegeben.",
	Grants:       "Wer meine Zentralen sonst erreichen darf",
	Revoke:       "Entziehen",
	NoGrants:     "Niemand sonst darf Ihre Zentralen erreichen.",
	GrantTitle:   "Zentrale freigeben",
	ScriptHint:   "Die Skript-Engine kann auf der Zentrale alles, wie ihr Administrator: Geben Sie sie nur Menschen frei, denen Sie das anvertrauen.",
	UntilHint:    "Leer lassen für unbegrenzt. Der Zugriff endet zu dieser Zeit, offene Verbindungen auch.",
	GrantButton:  "Freigeben",
	PortWebUI:    "WebUI",
	PortXMLRPC:   "XML-RPC (Apps)",
	PortScript:   "Skript-Engine",
	Tokens:       "App-Tokens",
	TokensHint:   "Apps, die keine Anmeldeseite zeigen können (Home Assistant, ioBroker, Skripte), verwenden statt Ihres Passworts ein Token. Ein Token erreicht eine Zentrale, nie mehr als Sie selbst.",
	Label:        "Bezeichnung",
	MadeBy:       "Erstellt von",
	Created:      "Erstellt",
	LastUsed:     "Zuletzt benutzt",
	Expires:      "Läuft ab",
	Operator:     "Relay-Betreiber",
	NoTokens:     "Keine App-Tokens.",
	TokenTitle:   "App-Token erstellen",
	ExpiresHint:  "Leer lassen für ein Token, das gilt, bis Sie es entziehen.",
	TokenButton:  "Token erstellen",
	Token:        "Token",

	NewTokenTitle: "Ihr neues App-Token",
	NewTokenOnce:  "Kopieren Sie es jetzt: Es wird nur dieses eine Mal gezeigt. Wer es hat, erreicht die Zentrale so weit, wie das Token erlaubt, bis Sie es entziehen.",
	Copy:          "Kopieren",
	TokenCCUAuth:  "Ist die Authentifizierung der Zentrale an (Einstellungen > Systemsteuerung > Sicherheit), dann als Benutzername den Benutzer der Zentrale und als Passwort das Token, einen Doppelpunkt und das Passwort dieses Benutzers eintragen.",

	Account:     "Mein Konto",
	Sessions:    "Wo ich angemeldet bin",
	From:        "Von",
	ThisSession: "dieser Browser",

	Audit:   "Was auf meinen Zentralen geschah",
	When:    "Wann",
	What:    "Was",
	Who:     "Wer",
	Port:    "Port",
	Outcome: "Ergebnis",
	Detail:  "Einzelheiten",
	Bytes:   "Bytes",
	NoAudit: "Noch nichts aufgezeichnet.",

	AddHub:           "Zentrale hinzufügen",
	AddHubHint:       "Geben Sie der Zentrale einen Namen und Sie bekommen einen einmaligen Code. Auf der Zentrale eingegeben, registriert er sie bei diesem Relay als Ihre: Sonst ist nichts einzutippen.",
	HubName:          "Name der Zentrale",
	HubNameHint:      "Kleinbuchstaben, Ziffern und '-', zum Beispiel garage. Er wird Teil der Adresse der Zentrale:",
	AddHubButton:     "Code erstellen",
	NewCodeTitle:     "Registrierungscode für die Zentrale",
	NewCodeOnce:      "Er wird nur dieses eine Mal gezeigt: Kopieren oder notieren Sie ihn jetzt. Geht er verloren, ziehen Sie ihn unten zurück und erstellen Sie einen neuen.",
	NewCodeValid:     "Gültig bis",
	NewCodeWorksOnce: "nur einmal verwendbar",
	NewCodeAddon:     "Auf der Zentrale: Einstellungen > Systemsteuerung > hubtunnel öffnen und den Code dort einfügen.",
	NewCodeQR:        "Oder mit dem Telefon scannen und auf der hubtunnel-Seite der Zentrale einfügen.",
	NewCodeCommand:   "Oder auf der Kommandozeile der Zentrale:",
	NewCodeDone:      "Fertig: zurück zu meinen Zentralen. Dort erscheint die Zentrale, sobald sie registriert ist.",
	Waiting:          "Warten auf Registrierung",
	WaitingCode:      "wartet auf ihren Code",
	WaitingConnect:   "registriert, wartet auf Verbindung",
	WaitingHint:      "Diese Seite sieht alle 5 Sekunden neu nach.",
	Withdraw:         "Zurückziehen",

	LinePython:        "Python (xmlrpc.client)",
	LinePythonNoDNS:   "Python, mit dem Namen des Relays (wo NAME.domain nicht auflöst)",
	LineCurl:          "curl",
	LineHomeAssistant: "Home Assistant, HomeMatic-Integration (configuration.yaml)",
	LineIoBroker:      "ioBroker, Adapter hm-rpc (Instanz-Einstellungen)",
	LineWebUI:         "WebUI mit curl",
	LineScript:        "Skript-Engine mit curl",
	IOBAddress:        "HomeMatic-Adresse",
	IOBPort:           "HomeMatic-Port",
	IOBDaemon:         "Daemon",
	IOBProtocol:       "Protokoll",
	IOBHTTPS:          "https verwenden",
	IOBUser:           "Benutzername",
	IOBPass:           "Passwort",

	KindLogin:      "Anmeldung",
	KindLogout:     "Abmeldung",
	KindSession:    "Nutzung",
	KindGrant:      "freigegeben",
	KindRevoke:     "entzogen",
	KindToken:      "Token erstellt",
	KindHubConnect: "Zentrale online",
	KindHubGone:    "Zentrale offline",
	KindTOTP:       "Zwei Schritte",
	KindEnroll:     "Registrierung",
	KindClone:      "Kopie der Zentrale abgewiesen",
	KindHubKey:     "Schlüssel der Zentrale ersetzt",

	ErrInternal:           "Das Relay konnte das gerade nicht erledigen. Versuchen Sie es gleich noch einmal; wenn es so bleibt, sagen Sie dem Betreiber des Relays Bescheid.",
	ErrNotFound:           "Unter dieser Adresse gibt es keine Seite.",
	ErrForbidden:          "Dieses Formular war veraltet oder kam von einer anderen Seite, daher wurde nichts geändert. Laden Sie die Seite neu und versuchen Sie es noch einmal.",
	ErrBadForm:            "Das Formular konnte nicht gelesen werden. Laden Sie die Seite neu und versuchen Sie es noch einmal.",
	ErrBadLogin:           "Benutzername oder Passwort falsch.",
	ErrDisabled:           "Dieses Konto ist gesperrt. Fragen Sie den Betreiber des Relays.",
	ErrAccountLocked:      "Zu viele fehlgeschlagene Anmeldungen für dieses Konto. Versuchen Sie es in 15 Minuten wieder.",
	ErrTooManyFromAddress: "Zu viele fehlgeschlagene Anmeldungen aus Ihrem Netz. Versuchen Sie es in 15 Minuten wieder.",
	ErrBadCode:            "Dieser Code stimmt nicht. Ein Code gilt nur einmal und wechselt alle 30 Sekunden: Prüfen Sie die Uhrzeit Ihres Telefons und geben Sie den aktuellen ein.",
	ErrLoginExpired:       "Diese Anmeldung hat zu lange gedauert oder hatte zu viele falsche Codes. Melden Sie sich erneut an.",
	ErrEnrolExpired:       "Das hat zu lange gedauert: Scannen Sie diesen neuen QR-Code und geben Sie seinen Code ein.",
	ErrNotYourHub:         "Das geht nur für Zentralen, die Ihnen gehören.",
	ErrNoPorts:            "Wählen Sie mindestens eines von WebUI, XML-RPC und Skript-Engine.",
	ErrBadTime:            "Die Zeit konnte nicht gelesen werden. Wählen Sie Datum und Uhrzeit oder lassen Sie das Feld leer.",
	ErrPastTime:           "Diese Zeit ist vorbei. Wählen Sie eine in der Zukunft oder lassen Sie das Feld leer.",
	ErrGrantSelf:          "Diese Zentrale gehört Ihnen bereits.",
	ErrNoSuchUser:         "Auf diesem Relay gibt es keinen Benutzer dieses Namens.",
	ErrNoSuchGrant:        "Dieser Benutzer hatte keinen Zugriff auf diese Zentrale.",
	ErrTokenNotAllowed:    "Tokens gehen nur für Zentralen und Teile, die Sie selbst erreichen dürfen.",
	ErrNoSuchToken:        "Ein solches Token von Ihnen gibt es nicht.",
	ErrNoSuchSession:      "Eine solche Anmeldung von Ihnen gibt es nicht.",
	ErrBadLabel:           "Eine Bezeichnung hat höchstens 64 Zeichen gewöhnlichen Text.",
	OkGrant:               "Freigegeben.",
	OkGrantRevoked:        "Zugriff entzogen. Offene Verbindungen dieses Benutzers wurden beendet.",
	OkTokenRevoked:        "Token entzogen. Apps, die es verwenden, wurden getrennt.",
	OkSessionRevoked:      "Diese Anmeldung wurde beendet.",
	OkTOTPOn:              "Anmeldung in zwei Schritten ist an.",
	OkTOTPOff:             "Anmeldung in zwei Schritten ist aus.",
	ErrHubName:            "Der Name einer Zentrale besteht aus Kleinbuchstaben, Ziffern und '-' (höchstens 63, nicht mit '-' am Anfang oder Ende), zum Beispiel garage.",
	ErrHubNameTaken:       "Dieser Name ist vergeben: Eine Zentrale hat ihn, oder ein Code dafür wartet. Wählen Sie einen anderen Namen oder ziehen Sie den wartenden Code zurück.",
	ErrTooManyCodes:       "Sie haben 5 Codes, die auf ihre Verwendung warten. Verwenden Sie einen oder ziehen Sie einen zurück, bevor Sie einen neuen erstellen.",
	ErrNoSuchCode:         "Für diese Zentrale wartet kein Code von Ihnen.",
	OkCodeWithdrawn:       "Code zurückgezogen: Er funktioniert nicht mehr.",
}

// language picks the page language from Accept-Language: German when the
// browser's first choice among German and English is German, else English.
func language(r *http.Request) *text {
	best, bestQ := &english, 0.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if q <= bestQ { // an earlier tag of the same weight wins
			continue
		}
		switch primary {
		case "de":
			best, bestQ = &german, q
		case "en":
			best, bestQ = &english, q
		}
	}
	return best
}

// kindName is an audit kind as the page shows it.
func kindName(l *text, kind string) string {
	switch kind {
	case store.KindLogin:
		return l.KindLogin
	case store.KindLogout:
		return l.KindLogout
	case store.KindSession:
		return l.KindSession
	case store.KindGrant:
		return l.KindGrant
	case store.KindRevoke:
		return l.KindRevoke
	case store.KindToken:
		return l.KindToken
	case store.KindHubConnect:
		return l.KindHubConnect
	case store.KindHubGone:
		return l.KindHubGone
	case KindTOTP:
		return l.KindTOTP
	case store.KindEnroll:
		return l.KindEnroll
	case store.KindClone:
		return l.KindClone
	case store.KindHubKey:
		return l.KindHubKey
	}
	return kind
}
