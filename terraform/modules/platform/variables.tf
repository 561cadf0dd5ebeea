################################################################################
# What to install
################################################################################

variable "addons" {
  description = "Which releases to install. Turn one off when the cluster already runs it (the chart still needs its CRDs and APIs)."
  type = object({
    cert_manager          = optional(bool, true)
    ingress_nginx         = optional(bool, true)
    kube_prometheus_stack = optional(bool, true)
    keda                  = optional(bool, true)
    cluster_autoscaler    = optional(bool, true)
    voicebot              = optional(bool, true)
  })
  default = {}
}

variable "chart_versions" {
  description = "Pinned versions of the third-party Helm charts."
  type = object({
    cert_manager          = optional(string, "v1.16.2")
    ingress_nginx         = optional(string, "4.11.3")
    kube_prometheus_stack = optional(string, "66.3.0")
    keda                  = optional(string, "2.16.0")
    nvidia_device_plugin  = optional(string, "0.17.1")
    gpu_operator          = optional(string, "v24.9.2")
    cluster_autoscaler    = optional(string, "9.46.3")
  })
  default = {}

  validation {
    condition     = alltrue([for v in values(var.chart_versions) : can(regex("^v?[0-9]+\\.[0-9]+\\.[0-9]+$", v))])
    error_message = "chart_versions must be exact versions (1.2.3 or v1.2.3), not ranges."
  }
}

################################################################################
# Ingress and TLS
################################################################################

variable "host" {
  description = "Public DNS name of the Voicebot UI and API (gateway.ingress.host). Point it at `ingress_load_balancer_hostname`."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.host))
    error_message = "host must be a fully qualified, lowercase DNS name such as voicebot.example.com."
  }
}

variable "ingress_class_name" {
  description = "IngressClass created by the ingress controller and used by the chart (gateway.ingress.className)."
  type        = string
  default     = "nginx"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$", var.ingress_class_name))
    error_message = "ingress_class_name must be a valid Kubernetes object name."
  }
}

variable "ingress_service_annotations" {
  description = "Annotations on the ingress controller's LoadBalancer Service, for the cloud's load balancer (for example an AWS NLB)."
  type        = map(string)
  default     = {}
}

variable "cluster_issuer" {
  description = "cert-manager ClusterIssuer for the ingress certificate: `acme` (Let's Encrypt by default, HTTP-01 through the ingress class) or `selfsigned` for a trial without DNS."
  type = object({
    name        = optional(string, "letsencrypt")
    type        = optional(string, "acme")
    acme_email  = optional(string)
    acme_server = optional(string, "https://acme-v02.api.letsencrypt.org/directory")
  })
  default = {}

  validation {
    condition     = contains(["acme", "selfsigned"], var.cluster_issuer.type)
    error_message = "cluster_issuer.type must be acme or selfsigned."
  }

  validation {
    condition     = var.cluster_issuer.type != "acme" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.cluster_issuer.acme_email))
    error_message = "cluster_issuer.acme_email must be a valid e-mail address when cluster_issuer.type is acme."
  }

  validation {
    condition     = startswith(var.cluster_issuer.acme_server, "https://")
    error_message = "cluster_issuer.acme_server must be an https:// ACME directory URL."
  }

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$", var.cluster_issuer.name))
    error_message = "cluster_issuer.name must be a valid Kubernetes object name."
  }
}

################################################################################
# Monitoring and alerting
################################################################################

variable "alertmanager_receiver" {
  description = "Where Alertmanager sends the alerts: `none`, `slack` (slack_webhook_url, optional slack_channel), `pagerduty` (pagerduty_routing_key) or `webhook` (webhook_url)."
  type = object({
    type                  = string
    slack_webhook_url     = optional(string)
    slack_channel         = optional(string)
    pagerduty_routing_key = optional(string)
    webhook_url           = optional(string)
  })
  default   = { type = "none" }
  sensitive = true

  validation {
    condition     = contains(["none", "slack", "pagerduty", "webhook"], var.alertmanager_receiver.type)
    error_message = "alertmanager_receiver.type must be none, slack, pagerduty or webhook."
  }

  validation {
    condition     = var.alertmanager_receiver.type != "slack" || startswith(coalesce(var.alertmanager_receiver.slack_webhook_url, "-"), "https://")
    error_message = "alertmanager_receiver.slack_webhook_url must be an https:// URL when type is slack."
  }

  validation {
    condition     = var.alertmanager_receiver.type != "pagerduty" || length(coalesce(var.alertmanager_receiver.pagerduty_routing_key, "-")) == 32
    error_message = "alertmanager_receiver.pagerduty_routing_key must be a 32-character Events API v2 routing key when type is pagerduty."
  }

  validation {
    condition     = var.alertmanager_receiver.type != "webhook" || can(regex("^https?://", coalesce(var.alertmanager_receiver.webhook_url, "-")))
    error_message = "alertmanager_receiver.webhook_url must be an http(s):// URL when type is webhook."
  }
}

variable "grafana_host" {
  description = "DNS name for a TLS ingress in front of Grafana; null keeps Grafana internal (reach it with `grafana_port_forward_command`)."
  type        = string
  default     = null

  validation {
    condition     = var.grafana_host == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.grafana_host))
    error_message = "grafana_host must be a fully qualified, lowercase DNS name, or null."
  }
}

variable "prometheus" {
  description = "Prometheus retention and persistent volume size."
  type = object({
    retention    = optional(string, "15d")
    storage_size = optional(string, "50Gi")
  })
  default = {}

  validation {
    condition     = can(regex("^[0-9]+(h|d|w|y)$", var.prometheus.retention)) && can(regex("^[0-9]+(Mi|Gi|Ti)$", var.prometheus.storage_size))
    error_message = "prometheus.retention must look like 15d and prometheus.storage_size like 50Gi."
  }
}

variable "storage_class_name" {
  description = "StorageClass of the monitoring volumes; null uses the cluster's default class."
  type        = string
  default     = null
}

################################################################################
# GPU nodes and cluster scaling
################################################################################

variable "gpu_stack" {
  description = "How GPUs are exposed to pods: `device-plugin` (the NVIDIA device plugin; drivers come with the node image, as on the EKS NVIDIA AMI), `gpu-operator` (NVIDIA GPU Operator, with driver and toolkit left to the node image) or `none` (the provider installs it, as on GKE)."
  type        = string
  default     = "device-plugin"

  validation {
    condition     = contains(["device-plugin", "gpu-operator", "none"], var.gpu_stack)
    error_message = "gpu_stack must be device-plugin, gpu-operator or none."
  }
}

variable "gpu_node_selector" {
  description = "Node selector of the GPU nodes, given to the GPU add-on; the gpu-cluster module's `gpu_node_selector` output."
  type        = map(string)
  default     = { "voicebot.dev/node-pool" = "gpu" }
}

variable "gpu_tolerations" {
  description = "Tolerations for the GPU nodes' taints, given to the GPU add-on; the gpu-cluster module's `gpu_node_tolerations` output."
  type = list(object({
    key      = string
    operator = optional(string, "Exists")
    value    = optional(string)
    effect   = optional(string)
  }))
  default = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]

  validation {
    condition     = alltrue([for t in var.gpu_tolerations : contains(["Exists", "Equal"], t.operator) && (t.effect == null || contains(["NoSchedule", "PreferNoSchedule", "NoExecute"], coalesce(t.effect, "NoSchedule")))])
    error_message = "gpu_tolerations need operator Exists or Equal and effect NoSchedule, PreferNoSchedule or NoExecute."
  }
}

variable "cluster_autoscaler" {
  description = "Cluster autoscaler settings (AWS): the EKS cluster name and region, and the service account that Pod Identity binds to its IAM role. Used when `addons.cluster_autoscaler` is true."
  type = object({
    cluster_name         = optional(string)
    aws_region           = optional(string)
    service_account_name = optional(string, "cluster-autoscaler")
  })
  default = {}

  validation {
    condition     = !var.addons.cluster_autoscaler || (var.cluster_autoscaler.cluster_name != null && var.cluster_autoscaler.aws_region != null)
    error_message = "cluster_autoscaler.cluster_name and cluster_autoscaler.aws_region are required when addons.cluster_autoscaler is true."
  }
}

################################################################################
# Voicebot chart (charts/voicebot)
################################################################################

variable "voicebot_chart_path" {
  description = "Path of the voicebot chart; null uses charts/voicebot of this repository."
  type        = string
  default     = null
}

variable "release_name" {
  description = "Helm release name of the voicebot chart; the gateway Service is `<release_name>-voicebot-gateway`."
  type        = string
  default     = "voicebot"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,36}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 38 characters (lowercase letters, digits, hyphens)."
  }
}

variable "namespace" {
  description = "Namespace of the voicebot release (created if missing)."
  type        = string
  default     = "voicebot"

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name."
  }
}

variable "gateway_replicas" {
  description = "Gateway replicas (gateway.replicas); the floor when autoscaling is on."
  type        = number
  default     = 2

  validation {
    condition     = var.gateway_replicas >= 1 && floor(var.gateway_replicas) == var.gateway_replicas
    error_message = "gateway_replicas must be a whole number of at least 1."
  }
}

variable "gateway_autoscaling_enabled" {
  description = "Scale the gateway with a HorizontalPodAutoscaler (gateway.autoscaling.enabled)."
  type        = bool
  default     = true
}

variable "triton_autoscaling_enabled" {
  description = "Scale Triton with KEDA on its queue metrics (triton.autoscaling.enabled, mode keda); needs `addons.keda` and `addons.kube_prometheus_stack`."
  type        = bool
  default     = true

  validation {
    condition     = !var.triton_autoscaling_enabled || (var.addons.keda && var.addons.kube_prometheus_stack)
    error_message = "triton_autoscaling_enabled needs addons.keda and addons.kube_prometheus_stack (KEDA scales on Prometheus metrics)."
  }

  validation {
    condition     = !var.triton_autoscaling_enabled || var.weights_storage_class_name != null
    error_message = "triton_autoscaling_enabled needs weights_storage_class_name (a ReadWriteMany StorageClass): replicas on different nodes share the weights claim."
  }
}

variable "models_profile" {
  description = "Model profile of the chart (models.profile); null keeps the chart's default."
  type        = string
  default     = null

  validation {
    condition     = var.models_profile == null || can(regex("^[a-z0-9][a-z0-9-]*$", var.models_profile))
    error_message = "models_profile must be a lowercase profile name such as gpu."
  }
}

variable "postgres" {
  description = "Database: the chart's bundled pgvector Postgres (`enabled = true`), or an external database whose connection Secret is named in `external_existing_secret`."
  type = object({
    enabled                  = optional(bool, true)
    external_existing_secret = optional(string)
  })
  default = {}

  validation {
    condition     = var.postgres.enabled || var.postgres.external_existing_secret != null
    error_message = "postgres.external_existing_secret is required when postgres.enabled is false."
  }
}

variable "hub_token_secret" {
  description = "Name of an existing Secret in `namespace` (key `token`) holding a Hugging Face token for gated models (models.fetch.hubTokenSecret); the default gpu profile's Llama repository is gated, and the chart refuses it without one. null sets nothing."
  type        = string
  default     = null
}

variable "weights_storage_class_name" {
  description = "A ReadWriteMany StorageClass (EFS) for the model weights claim (models.weights.storageClassName, accessModes [ReadWriteMany]); the chart refuses a ReadWriteOnce claim when Triton autoscales. null keeps the chart's ReadWriteOnce claim."
  type        = string
  default     = null

  validation {
    condition     = var.weights_storage_class_name == null || can(regex("^[a-z0-9][a-z0-9.-]*$", var.weights_storage_class_name))
    error_message = "weights_storage_class_name must be a StorageClass name (lowercase DNS subdomain)."
  }
}

variable "secrets_existing_secret" {
  description = "Name of an existing Secret in `namespace` holding the gateway's secrets (secrets.existingSecret); null lets the chart manage them."
  type        = string
  default     = null
}

variable "voicebot_values" {
  description = "Further chart values, deep-merged by Helm over the values this module composes."
  type        = any
  default     = {}
}

variable "voicebot_timeout_seconds" {
  description = "How long Helm waits for the voicebot release to become ready (model downloads and loading included)."
  type        = number
  default     = 1800

  validation {
    condition     = var.voicebot_timeout_seconds >= 300 && var.voicebot_timeout_seconds <= 7200
    error_message = "voicebot_timeout_seconds must be between 300 and 7200."
  }
}
