variable "region" {
  description = "AWS region to create the cluster in; pick one with GPU capacity for `gpu_instance_types`."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Name of the cluster and prefix of its AWS resources."
  type        = string
  default     = "voicebot"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "host" {
  description = "Public DNS name of the Voicebot UI, for example voicebot.example.com; create a CNAME to the `ingress_load_balancer_hostname` output."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.host))
    error_message = "host must be a fully qualified, lowercase DNS name."
  }
}

variable "acme_email" {
  description = "E-mail address registered with Let's Encrypt for the ingress certificate; null issues a self-signed certificate instead."
  type        = string
  default     = null

  validation {
    condition     = var.acme_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.acme_email))
    error_message = "acme_email must be a valid e-mail address, or null."
  }
}

variable "grafana_host" {
  description = "DNS name for a TLS ingress in front of Grafana; null keeps Grafana internal (port-forward)."
  type        = string
  default     = null
}

variable "alertmanager_receiver" {
  description = "Where Alertmanager sends alerts: type none, slack (slack_webhook_url, slack_channel), pagerduty (pagerduty_routing_key) or webhook (webhook_url)."
  type = object({
    type                  = string
    slack_webhook_url     = optional(string)
    slack_channel         = optional(string)
    pagerduty_routing_key = optional(string)
    webhook_url           = optional(string)
  })
  default   = { type = "none" }
  sensitive = true
}

variable "endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public Kubernetes API endpoint (your office or CI egress). Empty makes the endpoint private-only: run Terraform from inside the VPC then."
  type        = list(string)
  default     = []
}

variable "cluster_admin_arns" {
  description = "IAM role or user ARNs given cluster-admin, besides the identity that runs Terraform."
  type        = list(string)
  default     = []
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group (one NVIDIA GPU each is enough for the default models)."
  type        = list(string)
  default     = ["g6e.2xlarge"]
}

variable "gpu_min_size" {
  description = "Fewest GPU nodes; 0 lets the cluster autoscaler remove the last one when idle (the first request then waits for a node)."
  type        = number
  default     = 1
}

variable "gpu_max_size" {
  description = "Most GPU nodes the cluster autoscaler may run."
  type        = number
  default     = 2
}

variable "models_profile" {
  description = "Model profile of the voicebot chart (models.profile); null keeps the chart's default."
  type        = string
  default     = null
}

variable "voicebot_values" {
  description = "Further voicebot chart values, deep-merged over those the platform module composes."
  type        = any
  default     = {}
}

variable "tags" {
  description = "Tags added to every AWS resource."
  type        = map(string)
  default     = {}
}

variable "hub_token_secret" {
  description = "Name of a Secret in the voicebot namespace (key `token`) with a Hugging Face token that accepted the Llama 3.1 licence; the default gpu profile downloads it. null: none (the chart then refuses the gated profile)."
  type        = string
  default     = "voicebot-hub-token"
}
