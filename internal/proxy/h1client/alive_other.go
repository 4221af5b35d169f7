//go:build !unix

package h1client

// alive cannot peek here; a request that finds the connection closed is sent again.
func (c *conn) alive() bool { return true }
