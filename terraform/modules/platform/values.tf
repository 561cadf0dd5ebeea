# Values handed to the charts that are pure functions of the variables, kept apart from the
# releases so tests can evaluate them with plain `terraform` (no provider, no cluster).

locals {
  monitoring = var.addons.kube_prometheus_stack

  ################################################################################
  # Voicebot chart values, composed from variables (names fixed by the chart's contract)
  ################################################################################

  voicebot_values = merge(
    {
      gateway = {
        replicas    = var.gateway_replicas
        autoscaling = { enabled = var.gateway_autoscaling_enabled }
        ingress = merge(
          {
            enabled   = true
            host      = var.host
            className = var.ingress_class_name
          },
          var.addons.cert_manager ? { tls = { clusterIssuer = var.cluster_issuer.name } } : {},
        )
      }
      triton = {
        autoscaling = {
          enabled = var.triton_autoscaling_enabled
          mode    = "keda"
        }
      }
      metrics = {
        serviceMonitor   = { enabled = local.monitoring }
        prometheusRule   = { enabled = local.monitoring }
        grafanaDashboard = { enabled = local.monitoring }
      }
      postgres = merge(
        { enabled = var.postgres.enabled },
        var.postgres.external_existing_secret != null ? { external = { existingSecret = var.postgres.external_existing_secret } } : {},
      )
    },
    var.secrets_existing_secret != null ? { secrets = { existingSecret = var.secrets_existing_secret } } : {},
    length(local.models_values) > 0 ? { models = local.models_values } : {},
  )

  # models.* from three optional variables, merged into one map (merge() is shallow).
  models_values = merge(
    var.models_profile != null ? { profile = var.models_profile } : {},
    var.hub_token_secret != null ? { fetch = { hubTokenSecret = var.hub_token_secret } } : {},
    var.weights_storage_class_name != null ? {
      weights = { storageClassName = var.weights_storage_class_name, accessModes = ["ReadWriteMany"] }
    } : {},
  )

  ################################################################################
  # Alertmanager: one receiver built from var.alertmanager_receiver
  ################################################################################

  receiver = var.alertmanager_receiver
  alertmanager_receiver = merge(
    { name = "voicebot" },
    local.receiver.type == "slack" ? {
      slack_configs = [merge(
        {
          api_url       = local.receiver.slack_webhook_url
          send_resolved = true
          title         = "{{ .CommonLabels.alertname }} ({{ .Status }})"
          text          = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.runbook_url }}\n{{ end }}"
        },
        local.receiver.slack_channel != null ? { channel = local.receiver.slack_channel } : {},
      )]
    } : {},
    local.receiver.type == "pagerduty" ? {
      pagerduty_configs = [{
        routing_key   = local.receiver.pagerduty_routing_key
        send_resolved = true
      }]
    } : {},
    local.receiver.type == "webhook" ? {
      webhook_configs = [{
        url           = local.receiver.webhook_url
        send_resolved = true
      }]
    } : {},
  )

  alertmanager_config = {
    global = { resolve_timeout = "5m" }
    route = {
      receiver        = "voicebot"
      group_by        = ["alertname", "namespace"]
      group_wait      = "30s"
      group_interval  = "5m"
      repeat_interval = "4h"
      routes = [
        # The always-firing Watchdog proves the pipeline works; it should not page anyone.
        { receiver = "null", matchers = ["alertname = \"Watchdog\""] },
      ]
    }
    inhibit_rules = [
      {
        source_matchers = ["severity = \"critical\""]
        target_matchers = ["severity = \"warning\""]
        equal           = ["alertname", "namespace"]
      },
    ]
    receivers = [{ name = "null" }, local.alertmanager_receiver]
  }
}
