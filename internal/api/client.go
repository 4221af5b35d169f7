package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"skein.dev/skein/internal/model"
)

// Client talks to a running `skein up`.
type Client struct {
	// Base is the API's base URL, e.g. http://127.0.0.1:41234.
	Base string
	HTTP *http.Client
}

// NewClient returns a client for the API at addr (host:port).
func NewClient(addr string) *Client {
	return &Client{Base: "http://" + addr, HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// Status fetches the mesh status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.get(ctx, "/api/status", &s)
	return s, err
}

// ExecEnv fetches the environment of a workload's replica 0.
func (c *Client) ExecEnv(ctx context.Context, name, namespace string) (ExecEnv, error) {
	var e ExecEnv
	q := url.Values{"workload": {name}, "namespace": {namespace}}
	err := c.get(ctx, "/api/exec?"+q.Encode(), &e)
	return e, err
}

// Config fetches the mesh's current configuration.
func (c *Client) Config(ctx context.Context) (*model.Mesh, error) {
	var m model.Mesh
	err := c.get(ctx, "/api/config", &m)
	return &m, err
}

// Down asks the mesh to stop.
func (c *Client) Down(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/api/down", nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("down: %s", resp.Status)
	}
	return nil
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.NewDecoder(resp.Body).Decode(into)
}
