# The cluster add-ons the voicebot chart relies on, then the chart itself:
#   cert-manager + ClusterIssuer  -> gateway.ingress.tls.clusterIssuer
#   ingress-nginx                 -> gateway.ingress.className
#   kube-prometheus-stack         -> metrics.serviceMonitor / prometheusRule / grafanaDashboard, Alertmanager
#   KEDA                          -> triton.autoscaling.mode = keda
#   NVIDIA device plugin / GPU Operator -> nvidia.com/gpu resources for Triton
#   cluster-autoscaler            -> node groups grow for pending Triton and gateway pods

locals {
  chart_path = coalesce(var.voicebot_chart_path, "${path.module}/../../../charts/voicebot")

  monitoring_namespace = "monitoring"
  ingress_namespace    = "ingress-nginx"
  kps_release          = "kube-prometheus-stack"

  gateway_service = "${var.release_name}-voicebot-gateway"
  grafana_service = "${local.kps_release}-grafana"

  storage_class = var.storage_class_name != null ? { storageClassName = var.storage_class_name } : {}

  kube_prometheus_stack_values = {
    prometheus = {
      prometheusSpec = {
        retention = var.prometheus.retention
        # Pick up the ServiceMonitors and PrometheusRules of every release, not only this one's.
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        ruleSelectorNilUsesHelmValues           = false
        probeSelectorNilUsesHelmValues          = false
        storageSpec = {
          volumeClaimTemplate = {
            spec = merge(local.storage_class, {
              accessModes = ["ReadWriteOnce"]
              resources   = { requests = { storage = var.prometheus.storage_size } }
            })
          }
        }
      }
    }
    alertmanager = {
      config = local.alertmanager_config
      alertmanagerSpec = {
        storage = {
          volumeClaimTemplate = {
            spec = merge(local.storage_class, {
              accessModes = ["ReadWriteOnce"]
              resources   = { requests = { storage = "5Gi" } }
            })
          }
        }
      }
    }
    grafana = merge(
      {
        adminPassword = random_password.grafana_admin.result
        # The chart's dashboard ConfigMaps live in the voicebot namespace.
        sidecar = { dashboards = { enabled = true, searchNamespace = "ALL" } }
      },
      var.grafana_host != null ? {
        ingress = merge(
          {
            enabled          = true
            ingressClassName = var.ingress_class_name
            hosts            = [var.grafana_host]
            tls              = [{ secretName = "grafana-tls", hosts = [var.grafana_host] }]
          },
          var.addons.cert_manager ? { annotations = { "cert-manager.io/cluster-issuer" = var.cluster_issuer.name } } : {},
        )
      } : {},
    )
  }

  gpu_tolerations = [
    for t in var.gpu_tolerations : merge(
      { key = t.key, operator = t.operator },
      t.value != null ? { value = t.value } : {},
      t.effect != null ? { effect = t.effect } : {},
    )
  ]
}

resource "random_password" "grafana_admin" {
  length  = 24
  special = false
}

################################################################################
# Monitoring first: the other releases create ServiceMonitors, which need its CRDs
################################################################################

resource "helm_release" "kube_prometheus_stack" {
  count = var.addons.kube_prometheus_stack ? 1 : 0

  name             = local.kps_release
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.chart_versions.kube_prometheus_stack
  namespace        = local.monitoring_namespace
  create_namespace = true
  timeout          = 900

  values = [yamlencode(local.kube_prometheus_stack_values)]
}

################################################################################
# TLS
################################################################################

resource "helm_release" "cert_manager" {
  count = var.addons.cert_manager ? 1 : 0

  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.chart_versions.cert_manager
  namespace        = "cert-manager"
  create_namespace = true

  values = [yamlencode({
    crds       = { enabled = true, keep = true }
    prometheus = { servicemonitor = { enabled = local.monitoring } }
  })]

  depends_on = [helm_release.kube_prometheus_stack]
}

# A small local chart, so the ClusterIssuer is applied after cert-manager's CRDs exist
# (a kubernetes_manifest would need them at plan time).
resource "helm_release" "cluster_issuer" {
  count = var.addons.cert_manager ? 1 : 0

  name      = "voicebot-cluster-issuer"
  chart     = "${path.module}/charts/cluster-issuer"
  namespace = "cert-manager"

  values = [yamlencode({
    name = var.cluster_issuer.name
    type = var.cluster_issuer.type
    acme = {
      email            = var.cluster_issuer.acme_email != null ? var.cluster_issuer.acme_email : ""
      server           = var.cluster_issuer.acme_server
      ingressClassName = var.ingress_class_name
    }
  })]

  depends_on = [helm_release.cert_manager]
}

################################################################################
# Ingress
################################################################################

resource "helm_release" "ingress_nginx" {
  count = var.addons.ingress_nginx ? 1 : 0

  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.chart_versions.ingress_nginx
  namespace        = local.ingress_namespace
  create_namespace = true

  values = [yamlencode({
    controller = {
      replicaCount = 2
      ingressClass = var.ingress_class_name
      ingressClassResource = {
        name    = var.ingress_class_name
        enabled = true
        default = false
      }
      service = {
        annotations           = var.ingress_service_annotations
        externalTrafficPolicy = "Local"
      }
      # Voice sessions are long-lived WebSockets.
      config = {
        "proxy-read-timeout" = "3600"
        "proxy-send-timeout" = "3600"
      }
      metrics = {
        enabled        = true
        serviceMonitor = { enabled = local.monitoring }
      }
    }
  })]

  depends_on = [helm_release.kube_prometheus_stack]
}

data "kubernetes_service_v1" "ingress_nginx" {
  count = var.addons.ingress_nginx ? 1 : 0

  metadata {
    name      = "ingress-nginx-controller"
    namespace = local.ingress_namespace
  }

  depends_on = [helm_release.ingress_nginx]
}

################################################################################
# Autoscaling: KEDA for Triton, the cluster autoscaler for nodes
################################################################################

resource "helm_release" "keda" {
  count = var.addons.keda ? 1 : 0

  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.chart_versions.keda
  namespace        = "keda"
  create_namespace = true

  values = [yamlencode({
    prometheus = {
      metricServer = { enabled = local.monitoring, serviceMonitor = { enabled = local.monitoring } }
      operator     = { enabled = local.monitoring, serviceMonitor = { enabled = local.monitoring } }
    }
  })]

  depends_on = [helm_release.kube_prometheus_stack]
}

resource "helm_release" "cluster_autoscaler" {
  count = var.addons.cluster_autoscaler ? 1 : 0

  name       = "cluster-autoscaler"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.chart_versions.cluster_autoscaler
  namespace  = "kube-system"

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.cluster_autoscaler.aws_region
    autoDiscovery = { clusterName = var.cluster_autoscaler.cluster_name }
    rbac = {
      serviceAccount = { create = true, name = var.cluster_autoscaler.service_account_name }
    }
    extraArgs = {
      expander                      = "least-waste"
      balance-similar-node-groups   = true
      skip-nodes-with-local-storage = false
    }
    serviceMonitor = { enabled = local.monitoring, namespace = "kube-system" }
  })]

  depends_on = [helm_release.kube_prometheus_stack]
}

################################################################################
# GPUs
################################################################################

resource "helm_release" "nvidia_device_plugin" {
  count = var.gpu_stack == "device-plugin" ? 1 : 0

  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.chart_versions.nvidia_device_plugin
  namespace        = "nvidia-device-plugin"
  create_namespace = true

  values = [yamlencode({
    nodeSelector = var.gpu_node_selector
    tolerations  = concat(local.gpu_tolerations, [{ key = "CriticalAddonsOnly", operator = "Exists" }])
  })]
}

resource "helm_release" "gpu_operator" {
  count = var.gpu_stack == "gpu-operator" ? 1 : 0

  name             = "gpu-operator"
  repository       = "https://helm.ngc.nvidia.com/nvidia"
  chart            = "gpu-operator"
  version          = var.chart_versions.gpu_operator
  namespace        = "gpu-operator"
  create_namespace = true

  values = [yamlencode({
    # The EKS NVIDIA AMIs ship the driver and the container toolkit.
    driver       = { enabled = false }
    toolkit      = { enabled = false }
    daemonsets   = { tolerations = local.gpu_tolerations }
    dcgmExporter = { serviceMonitor = { enabled = local.monitoring } }
  })]

  depends_on = [helm_release.kube_prometheus_stack]
}

################################################################################
# Voicebot
################################################################################

resource "helm_release" "voicebot" {
  count = var.addons.voicebot ? 1 : 0

  name             = var.release_name
  chart            = local.chart_path
  namespace        = var.namespace
  create_namespace = true
  timeout          = var.voicebot_timeout_seconds

  # Helm deep-merges later values over earlier ones.
  values = [
    yamlencode(local.voicebot_values),
    yamlencode(var.voicebot_values),
  ]

  lifecycle {
    precondition {
      condition     = fileexists("${local.chart_path}/Chart.yaml")
      error_message = "No Chart.yaml under ${local.chart_path}: set voicebot_chart_path to the voicebot chart."
    }
  }

  depends_on = [
    helm_release.kube_prometheus_stack,
    helm_release.cluster_issuer,
    helm_release.ingress_nginx,
    helm_release.keda,
    helm_release.nvidia_device_plugin,
    helm_release.gpu_operator,
  ]
}
