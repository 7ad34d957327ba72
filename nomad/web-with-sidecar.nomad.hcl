# A service and its gossamer sidecar proxy under Nomad, on host networking.
# Needs the gossamer agent on every client (gossamer-agent.nomad.hcl). No
# Consul Connect integration is used: a prestart task registers the service
# with its sidecar on the local agent, the proxy runs as a sidecar task of
# the same group, and a poststop task deregisters it.
job "web" {
  group "web" {
    count = 2

    network {
      mode = "host"
      port "http" {}  # the app, reached only through the proxy
      port "mesh" {}  # the sidecar's inbound mTLS port
    }

    task "register" {
      lifecycle {
        hook = "prestart"
      }
      driver = "raw_exec"
      template {
        destination = "local/web.json"
        data        = <<EOT
{"Name": "web", "ID": "web-{{ env "NOMAD_ALLOC_ID" }}", "Port": {{ env "NOMAD_PORT_http" }},
 "Connect": {"SidecarService": {"Port": {{ env "NOMAD_PORT_mesh" }},
   "Address": "{{ env "NOMAD_IP_mesh" }}",
   "Proxy": {"LocalServicePort": {{ env "NOMAD_PORT_http" }},
     "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]}}}}
EOT
      }
      config {
        command = "/opt/gossamer/.venv/bin/gossamer"
        args    = ["services", "register", "local/web.json"]
      }
    }

    task "web" {
      driver = "raw_exec"
      config {
        command = "/opt/web/bin/web"
        args    = ["--listen", "127.0.0.1:${NOMAD_PORT_http}", "--db", "127.0.0.1:9191"]
      }
    }

    task "proxy" {
      lifecycle {
        # poststart: the registration (prestart) exists by then; sidecar: kept running
        hook    = "poststart"
        sidecar = true
      }
      driver = "raw_exec"
      config {
        command = "/opt/gossamer/.venv/bin/gossamer"
        args    = ["connect", "proxy", "--sidecar-for", "web-${NOMAD_ALLOC_ID}"]
      }
      # SIGTERM drains open connections (15 s by default), then exits 0.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"
      resources {
        cpu    = 200
        memory = 96
      }
    }

    task "deregister" {
      lifecycle {
        hook = "poststop"
      }
      driver = "raw_exec"
      config {
        command = "/opt/gossamer/.venv/bin/gossamer"
        args    = ["services", "deregister", "web-${NOMAD_ALLOC_ID}"]
      }
    }
  }
}
