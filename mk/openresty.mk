# make test-openresty: the library inside Debian's nginx + libnginx-mod-http-lua (issue 7):
#   builds the LuaJIT modules (make LUA=luajit), starts the local realtime server and nginx
#   with examples/openresty/nginx.conf on loopback ports, follows runs through the SSE location
#   and checks the events, the worker staying responsive, TLS, timers and connection reuse;
#   runs the transport contract (spec/transport_contract.lua) against trigger.transport.ngx;
#   forwards run streams (both framings, a cut mid-stream, Last-Event-ID, clients leaving)
#   through the example's /stream location.
#   Prints "ok N - ..." lines and a closing "N passed, N failed". See spec/openresty/run.sh.
# make test-http1: the C unit tests of the HTTP/1.1 response parser (csrc/lib/http1.c).
.PHONY: test-openresty test-http1

build/test_http1: spec/c/test_http1.c csrc/lib/http1.c csrc/lib/http1.h csrc/lib/buf.c csrc/lib/buf.h
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -o $@ spec/c/test_http1.c csrc/lib/http1.c csrc/lib/buf.c

test-http1: build/test_http1
	@build/test_http1

test-openresty: build/test_http1
	@MAKE="$(MAKE)" bash spec/openresty/run.sh
