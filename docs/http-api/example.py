"""Flotilla's HTTP/JSON API from Python's standard library (docs/http-api.md).

usage: example.py HOST:PORT NODE_NAME TLS_DIR CLIENT  (NODE_NAME: node-1.<cluster_id>)
"""
import http.client, json, socket, ssl, sys
from urllib.parse import quote

address, node_name, tls_dir, client = sys.argv[1:5]
host, port = address.rsplit(":", 1)
tls = ssl.create_default_context(cafile=f"{tls_dir}/ca.pem")  # the cluster CA only
tls.load_cert_chain(f"{tls_dir}/client-{client}.pem", f"{tls_dir}/client-{client}.key")

def call(method, path, body=None):
    """One request; the node's certificate must name NODE_NAME, whatever address we dial."""
    connection = http.client.HTTPSConnection(node_name, int(port), context=tls, timeout=15)
    connection.sock = tls.wrap_socket(socket.create_connection((host, int(port))), server_hostname=node_name)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    answer = json.loads(response.read())
    print(response.status, json.dumps(answer))
    return response.status, answer

key = quote("py/greeting", safe="")
assert call("PUT", f"/v1/kv/{key}", b"hello")[0] == 200
assert call("GET", f"/v1/kv/{key}")[1]["result"] == "hello"
swap = json.dumps({"expected": "hello", "new": "bonjour"})
assert call("POST", f"/v1/kv/{key}/cas", swap)[1]["result"]["swapped"] is True
assert call("GET", "/v1/kv?start=py/&end=py0")[1]["result"]["pairs"] == [["py/greeting", "bonjour"]]
assert call("DELETE", f"/v1/kv/{key}")[0] == 200
assert call("GET", f"/v1/kv/{key}")[0] == 404
