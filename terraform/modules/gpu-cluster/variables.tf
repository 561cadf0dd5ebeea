################################################################################
# Cluster
################################################################################

variable "name" {
  description = "Name of the EKS cluster; also prefixes the VPC, node groups and IAM roles."
  type        = string

  validation {
    # IAM name prefixes derived from it must stay under 38 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes `<major>.<minor>` version of the EKS control plane."
  type        = string
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be a supported EKS minor version such as \"1.32\" (1.28 or later)."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API on a public endpoint (restricted to `endpoint_public_access_cidrs`). The private endpoint is always on; set false for a private-only cluster reached through a VPN or bastion."
  type        = bool
  default     = true
}

variable "endpoint_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public API endpoint. Required when `endpoint_public_access` is true; 0.0.0.0/0 is refused."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.endpoint_public_access_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs must hold valid CIDR blocks, and not 0.0.0.0/0."
  }

  validation {
    condition     = !var.endpoint_public_access || length(var.endpoint_public_access_cidrs) > 0
    error_message = "endpoint_public_access is true: list the CIDR blocks allowed to reach the API in endpoint_public_access_cidrs."
  }
}

variable "cluster_admin_arns" {
  description = "IAM principal ARNs (roles or users) granted cluster-admin through EKS access entries."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.cluster_admin_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "cluster_admin_arns must be IAM role or user ARNs (arn:aws:iam::123456789012:role/NAME)."
  }
}

variable "enable_cluster_creator_admin_permissions" {
  description = "Grant the identity that runs Terraform cluster-admin through an access entry, so the platform module can install charts in the same apply."
  type        = bool
  default     = true
}

variable "cluster_enabled_log_types" {
  description = "Control-plane log types sent to CloudWatch Logs."
  type        = list(string)
  default     = ["api", "audit", "authenticator"]

  validation {
    condition     = alltrue([for t in var.cluster_enabled_log_types : contains(["api", "audit", "authenticator", "controllerManager", "scheduler"], t)])
    error_message = "cluster_enabled_log_types may only contain api, audit, authenticator, controllerManager and scheduler."
  }
}

variable "cloudwatch_log_retention_days" {
  description = "Retention, in days, of the control-plane log group."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.cloudwatch_log_retention_days)
    error_message = "cloudwatch_log_retention_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before the KMS key that encrypts Kubernetes Secrets is deleted after a destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be between 7 and 30."
  }
}

################################################################################
# Network
################################################################################

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC created for the cluster."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /20 or larger."
  }
}

variable "availability_zone_count" {
  description = "Number of availability zones to spread subnets and nodes over."
  type        = number
  default     = 3

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 4
    error_message = "availability_zone_count must be between 2 and 4 (EKS needs at least 2)."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all private subnets (cheaper) instead of one per availability zone (zone-redundant egress)."
  type        = bool
  default     = true
}

################################################################################
# Node groups
################################################################################

variable "system_node_group" {
  description = "The system node group: cluster add-ons, ingress, monitoring, the gateway and Postgres run here."
  type = object({
    instance_types = optional(list(string), ["m6i.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 2)
    max_size       = optional(number, 5)
    desired_size   = optional(number, 3)
    disk_size_gib  = optional(number, 50)
    labels         = optional(map(string), {})
  })
  default = {}

  validation {
    condition     = var.system_node_group.min_size >= 1 && var.system_node_group.min_size <= var.system_node_group.desired_size && var.system_node_group.desired_size <= var.system_node_group.max_size
    error_message = "system_node_group needs 1 <= min_size <= desired_size <= max_size."
  }

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.system_node_group.capacity_type)
    error_message = "system_node_group.capacity_type must be ON_DEMAND or SPOT."
  }

  validation {
    condition     = var.system_node_group.disk_size_gib >= 20 && length(var.system_node_group.instance_types) > 0
    error_message = "system_node_group needs at least one instance type and a disk of 20 GiB or more."
  }
}

variable "gpu_node_group" {
  description = "The GPU node group that runs Triton. Nodes use the EKS NVIDIA AMI (driver and container toolkit preinstalled), carry the label voicebot.dev/node-pool=gpu and the taint nvidia.com/gpu=true:NoSchedule that the chart's Triton scheduling matches."
  type = object({
    instance_types = optional(list(string), ["g6e.2xlarge"])
    ami_type       = optional(string, "AL2023_x86_64_NVIDIA")
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 1)
    max_size       = optional(number, 4)
    desired_size   = optional(number, 1)
    disk_size_gib  = optional(number, 200)
    labels         = optional(map(string), {})
  })
  default = {}

  validation {
    condition     = var.gpu_node_group.min_size >= 0 && var.gpu_node_group.min_size <= var.gpu_node_group.desired_size && var.gpu_node_group.desired_size <= var.gpu_node_group.max_size && var.gpu_node_group.max_size >= 1
    error_message = "gpu_node_group needs 0 <= min_size <= desired_size <= max_size and max_size >= 1."
  }

  validation {
    condition     = contains(["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"], var.gpu_node_group.ami_type)
    error_message = "gpu_node_group.ami_type must be an EKS NVIDIA AMI type: AL2023_x86_64_NVIDIA or BOTTLEROCKET_x86_64_NVIDIA."
  }

  validation {
    # NVIDIA GPU families: g4dn, g5, g6, g6e, gr6, p3, p4d, p5 ...
    condition     = length(var.gpu_node_group.instance_types) > 0 && alltrue([for t in var.gpu_node_group.instance_types : can(regex("^(g[4-9][a-z]*|gr6|p[3-6][a-z]*)\\.[0-9a-z]+$", t))])
    error_message = "gpu_node_group.instance_types must be NVIDIA GPU instance types (g4dn, g5, g6, g6e, p4d, p5, ...)."
  }

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_node_group.capacity_type)
    error_message = "gpu_node_group.capacity_type must be ON_DEMAND or SPOT."
  }

  validation {
    # Triton images and model weights are large.
    condition     = var.gpu_node_group.disk_size_gib >= 100
    error_message = "gpu_node_group.disk_size_gib must be at least 100 (Triton images and model weights)."
  }

  validation {
    condition     = !contains(keys(var.gpu_node_group.labels), "voicebot.dev/node-pool")
    error_message = "gpu_node_group.labels must not set voicebot.dev/node-pool: the module sets it to \"gpu\" for the chart's Triton scheduling."
  }
}

variable "tags" {
  description = "Tags added to every AWS resource the module creates."
  type        = map(string)
  default     = {}
}
