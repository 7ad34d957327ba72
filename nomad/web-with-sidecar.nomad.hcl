# A service and its gossamer sidecar proxy, registered by Nomad's own Consul
# integration against the gossamer agent of the node (gossamer-agent.nomad.hcl;
# the Nomad client's `consul { address = "127.0.0.1:8500" }`, the default).
#
# Why `connect { native = true }` and not `sidecar_service`: for a
# sidecar_service Nomad's client runs `consul connect envoy -bootstrap`
# before the sidecar task (it needs the consul binary) and only places the
# group on clients whose Consul offers an xDS gRPC port. gossamer's proxy
# needs neither. With `native`, Nomad registers the service with
# Connect.Native and the mesh port, and our proxy task *is* that mesh
# endpoint: mTLS in on the mesh port, plain to the app on loopback, plain
# upstream listeners for the app. Host networking works (Nomad does not
# require bridge mode for native services).
job "web" {
  group "web" {
    count = 2

    network {
      mode = "host"
      port "http" {}  # the app, on 127.0.0.1 only: reached through the proxy
      port "mesh" {}  # the proxy's inbound mTLS port, the one registered
      # The proxy's upstream listener for db, on 127.0.0.1: a port Nomad picks, so two
      # allocations placed on one client (binpacking does) each have their own. A fixed
      # port (9191) was held by the first one's proxy; the second's could not listen and
      # its app called db through the first allocation's proxy, cut off when that one
      # stopped (a rolling update stops it first).
      port "db" {}
    }

    service {
      name = "web"
      port = "mesh"
      task = "proxy"  # the task that speaks the mesh's mTLS for this service
      tags = ["http", "v1"]

      meta {
        team = "storefront"
      }

      check {
        name     = "web mesh port"
        type     = "tcp"
        interval = "5s"
        timeout  = "2s"
      }

      connect {
        native = true
      }
    }

    task "web" {
      driver = "raw_exec"

      config {
        command = "/opt/web/bin/web"
        args    = ["--listen", "127.0.0.1:${NOMAD_PORT_http}", "--db", "127.0.0.1:${NOMAD_PORT_db}"]
      }
    }

    task "proxy" {
      lifecycle {
        hook    = "prestart"
        sidecar = true  # started before the app, kept running beside it
      }

      driver = "raw_exec"

      config {
        command = "/opt/gossamer/.venv/bin/gossamer"
        # Nomad's Connect-native hook sets CONSUL_HTTP_ADDR (the node's agent)
        # for this task; the proxy reads it.
        args = [
          "connect", "proxy",
          "--service", "web",
          "--listen", "${NOMAD_IP_mesh}:${NOMAD_PORT_mesh}",
          "--local", "127.0.0.1:${NOMAD_PORT_http}",
          "--upstream", "db:${NOMAD_PORT_db}",
          # A service busier than one core: "--workers", "2" (each worker is
          # one more process of ~30 MiB, ~15 MiB of it its own: raise memory).
        ]
      }

      # SIGTERM drains open connections (15 s by default), then exits 0.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"

      resources {
        cpu    = 200
        memory = 96
      }
    }
  }
}
