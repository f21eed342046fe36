package ccusim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// maxRequestBytes bounds an XML-RPC request body.
const maxRequestBytes = 1 << 20

// rpcMethods lists the methods every interface answers, for
// system.listMethods.
var rpcMethods = []string{
	"getDeviceDescription",
	"getParamset",
	"getParamsetDescription",
	"getValue",
	"init",
	"listDevices",
	"ping",
	"putParamset",
	"setValue",
	"system.listMethods",
	"system.methodHelp",
	"system.multicall",
}

var _ http.Handler = (*rpcServer)(nil)

// rpcServer answers XML-RPC for one interface, on any path.
type rpcServer struct {
	iface *iface
	store *store
	logf  logger.Logf
}

func (h *rpcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "XML-RPC wants POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	var resp []byte
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			resp = encodeFault(h.asFault("(request too large)", faultf(faultFailure, "Failure: request larger than %d bytes", maxRequestBytes)))
		} else {
			// The client went away mid-request; nobody reads an answer.
			return
		}
	} else {
		resp = h.serve(body)
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(resp)))
	w.Write(resp)
}

// serve answers one XML-RPC request document. It always returns a response
// document: bad input gets a fault.
func (h *rpcServer) serve(body []byte) []byte {
	method, params, err := decodeMethodCall(bytes.NewReader(body))
	if err != nil {
		h.logf("%s: malformed request: %v", h.iface.name, err)
		return encodeFault(faultf(faultFailure, "Failure: malformed XML-RPC request: %v", err))
	}
	result, err := h.call(method, params, false)
	if err != nil {
		return encodeFault(h.asFault(method, err))
	}
	resp, err := encodeResponse(result)
	if err != nil {
		return encodeFault(h.asFault(method, err))
	}
	return resp
}

func (h *rpcServer) asFault(method string, err error) *Fault {
	var f *Fault
	if !errors.As(err, &f) {
		f = faultf(faultFailure, "Failure: %v", err)
	}
	h.logf("%s: %s: fault %d: %s", h.iface.name, method, f.Code, f.String)
	return f
}

// call runs one method. inMulticall forbids nesting system.multicall.
func (h *rpcServer) call(method string, args []any, inMulticall bool) (any, error) {
	switch method {
	case "system.listMethods":
		return slices.Clone(rpcMethods), nil
	case "system.methodHelp":
		if err := wantArgs(method, args, 1, 1); err != nil {
			return nil, err
		}
		return "", nil
	case "system.multicall":
		if inMulticall {
			return nil, faultf(faultFailure, "Failure: system.multicall cannot be nested")
		}
		return h.multicall(args)
	case "init":
		// init(url[, interface_id]) registers (or, without an id,
		// unregisters) an event callback. The simulator sends no events.
		if err := wantArgs(method, args, 1, 2); err != nil {
			return nil, err
		}
		if _, err := stringArg(method, args, 0); err != nil {
			return nil, err
		}
		return "", nil
	case "ping":
		if err := wantArgs(method, args, 1, 1); err != nil {
			return nil, err
		}
		return true, nil
	case "listDevices":
		if err := wantArgs(method, args, 0, 1); err != nil {
			return nil, err
		}
		var list []any
		for _, dev := range h.iface.devices {
			list = append(list, h.iface.description(dev))
			for _, ch := range dev.children {
				list = append(list, h.iface.description(ch))
			}
		}
		return list, nil
	case "getDeviceDescription":
		n, err := h.nodeArg(method, args, 1, 1)
		if err != nil {
			return nil, err
		}
		return h.iface.description(n), nil
	case "getValue":
		// getValue(address, key[, mode])
		n, err := h.nodeArg(method, args, 2, 3)
		if err != nil {
			return nil, err
		}
		key, err := stringArg(method, args, 1)
		if err != nil {
			return nil, err
		}
		return h.store.get(n, key)
	case "setValue":
		// setValue(address, key, value[, rx_mode])
		n, err := h.nodeArg(method, args, 3, 4)
		if err != nil {
			return nil, err
		}
		key, err := stringArg(method, args, 1)
		if err != nil {
			return nil, err
		}
		if err := h.store.set(n, map[string]any{key: args[2]}); err != nil {
			return nil, err
		}
		return "", nil
	case "getParamset":
		// getParamset(address, paramset_key[, mode])
		n, key, err := h.paramsetArgs(method, args, 2, 3)
		if err != nil {
			return nil, err
		}
		if key == "VALUES" {
			return h.store.paramset(n), nil
		}
		return map[string]any{}, nil
	case "getParamsetDescription":
		n, key, err := h.paramsetArgs(method, args, 2, 2)
		if err != nil {
			return nil, err
		}
		desc := map[string]any{}
		if key == "VALUES" {
			for i, p := range n.params {
				desc[p.id] = paramDescription(p, i)
			}
		}
		return desc, nil
	case "putParamset":
		// putParamset(address, paramset_key, set[, rx_mode])
		n, key, err := h.paramsetArgs(method, args, 3, 4)
		if err != nil {
			return nil, err
		}
		values, ok := args[2].(map[string]any)
		if !ok {
			return nil, faultf(faultFailure, "Failure: %s: argument 3 must be a struct, got %s", method, xmlrpcType(args[2]))
		}
		if key == "VALUES" {
			if err := h.store.set(n, values); err != nil {
				return nil, err
			}
		}
		// MASTER settings are accepted and forgotten.
		return "", nil
	}
	return nil, faultf(faultFailure, "Failure: %s: unknown method name", method)
}

// multicall runs system.multicall: its one argument is an array of
// {methodName, params} structs; the result has, per call, a one-element
// array with the result or a fault struct.
func (h *rpcServer) multicall(args []any) (any, error) {
	if err := wantArgs("system.multicall", args, 1, 1); err != nil {
		return nil, err
	}
	calls, ok := args[0].([]any)
	if !ok {
		return nil, faultf(faultFailure, "Failure: system.multicall wants an array of calls, got %s", xmlrpcType(args[0]))
	}
	results := make([]any, len(calls))
	for i, c := range calls {
		v, err := h.multicallOne(c)
		if err != nil {
			results[i] = faultStruct(h.asFault("system.multicall", err))
			continue
		}
		results[i] = []any{v}
	}
	return results, nil
}

func (h *rpcServer) multicallOne(c any) (any, error) {
	m, ok := c.(map[string]any)
	if !ok {
		return nil, faultf(faultFailure, "Failure: a system.multicall entry must be a struct, got %s", xmlrpcType(c))
	}
	name, ok := m["methodName"].(string)
	if !ok {
		return nil, faultf(faultFailure, "Failure: a system.multicall entry needs a string methodName")
	}
	params, ok := m["params"].([]any)
	if !ok {
		return nil, faultf(faultFailure, "Failure: system.multicall entry %s needs an array of params", name)
	}
	return h.call(name, params, true)
}

func wantArgs(method string, args []any, min, max int) error {
	if len(args) < min || len(args) > max {
		want := fmt.Sprint(min)
		if max != min {
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return faultf(faultFailure, "Failure: %s wants %s arguments, got %d", method, want, len(args))
	}
	return nil
}

func stringArg(method string, args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", faultf(faultFailure, "Failure: %s: argument %d must be a string, got %s", method, i+1, xmlrpcType(args[i]))
	}
	return s, nil
}

// nodeArg checks the argument count and resolves the address in args[0].
func (h *rpcServer) nodeArg(method string, args []any, min, max int) (*node, error) {
	if err := wantArgs(method, args, min, max); err != nil {
		return nil, err
	}
	address, err := stringArg(method, args, 0)
	if err != nil {
		return nil, err
	}
	return h.iface.lookup(address)
}

// paramsetArgs resolves (address, paramset_key, …) to a node that has that
// paramset.
func (h *rpcServer) paramsetArgs(method string, args []any, min, max int) (*node, string, error) {
	n, err := h.nodeArg(method, args, min, max)
	if err != nil {
		return nil, "", err
	}
	key, err := stringArg(method, args, 1)
	if err != nil {
		return nil, "", err
	}
	if !n.hasParamset(key) {
		return nil, "", faultf(faultUnknownParamset, "Unknown paramset: %s has no paramset %q", n.address, key)
	}
	return n, key, nil
}
