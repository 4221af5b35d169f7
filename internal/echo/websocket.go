package echo

import (
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/websocket"
)

// WebSocketPath is where the echo server accepts WebSocket connections (an HTTP/1.1
// Upgrade: websocket request, RFC 6455): it sends one text message with the answering
// workload's name, then echoes every message back, so tests can see an upgraded
// connection cross the sidecars in both directions.
const WebSocketPath = "/ws"

// isWebSocket reports whether r asks to upgrade to WebSocket.
func isWebSocket(r *http.Request) bool {
	return r.URL.Path == WebSocketPath && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// webSocketHandler greets with the identity's workload and echoes. The origin check of
// x/net/websocket's default server is left out: an echo accepts any client.
func webSocketHandler(id Identity) http.Handler {
	return websocket.Server{
		Handshake: func(*websocket.Config, *http.Request) error { return nil },
		Handler: func(ws *websocket.Conn) {
			defer ws.Close()
			if err := websocket.Message.Send(ws, id.Workload); err != nil {
				return
			}
			_, _ = io.Copy(ws, ws)
		},
	}
}
