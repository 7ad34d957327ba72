# The gossamer agent on every Nomad client, as a system job.
# Nomad's Consul integration then talks to it at 127.0.0.1:8500 as it would
# to a Consul agent (service registration arrives with the catalog).
# An agent serving HTTPS only (`http_port: -1`, `https: {port: 8501}`): give the
# Nomad client `consul { address = "127.0.0.1:8501"  ssl = true  ca_file = "<mesh
# roots>" }`, the file from `gossamer ca roots --pem` (README, ACLs and HTTPS).
job "gossamer" {
  type = "system"

  group "agent" {
    network {
      mode = "host"
    }

    task "agent" {
      driver = "raw_exec"

      config {
        command = "/opt/gossamer/.venv/bin/gossamer"
        args = [
          "agent",
          "--node", "${node.unique.name}",
          "--bind", "${attr.unique.network.ip-address}",
          "--data-dir", "/var/lib/gossamer",
          "--retry-join", "${meta.gossamer_join}",
        ]
      }

      # SIGTERM: graceful leave, peers see "left".
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
