# From an empty AWS account to a running Voicebot: a GPU EKS cluster, the add-ons the chart
# needs, and the chart. See README.md for the cost warning and the commands.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { "voicebot.dev/example" = "aws-eks" })
  }
}

locals {
  # Short-lived tokens from the AWS CLI, so the providers keep working past the 15-minute token life.
  kubernetes_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.gpu_cluster.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.gpu_cluster.cluster_endpoint
    cluster_ca_certificate = base64decode(module.gpu_cluster.cluster_certificate_authority_data)
    exec                   = local.kubernetes_exec
  }
}

provider "kubernetes" {
  host                   = module.gpu_cluster.cluster_endpoint
  cluster_ca_certificate = base64decode(module.gpu_cluster.cluster_certificate_authority_data)

  exec {
    api_version = local.kubernetes_exec.api_version
    command     = local.kubernetes_exec.command
    args        = local.kubernetes_exec.args
  }
}

module "gpu_cluster" {
  source = "../../modules/gpu-cluster"

  name                         = var.name
  endpoint_public_access       = length(var.endpoint_public_access_cidrs) > 0
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  cluster_admin_arns           = var.cluster_admin_arns

  gpu_node_group = {
    instance_types = var.gpu_instance_types
    min_size       = var.gpu_min_size
    desired_size   = var.gpu_min_size
    max_size       = var.gpu_max_size
  }
}

# Encrypted gp3 volumes by default (EKS no longer marks a default StorageClass).
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }

  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Delete"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }
}

# ReadWriteMany volumes on the cluster's EFS file system, for the model weights: every Triton
# replica mounts them (one access point per claim, owned by the images' UID 10001).
resource "kubernetes_storage_class_v1" "efs" {
  metadata {
    name = "efs"
  }

  storage_provisioner = "efs.csi.aws.com"
  reclaim_policy      = "Retain" # weights take long to download: keep them past the claim
  parameters = {
    provisioningMode = "efs-ap"
    fileSystemId     = module.gpu_cluster.weights_file_system_id
    directoryPerms   = "750"
    uid              = "10001"
    gid              = "10001"
  }
}

module "platform" {
  source = "../../modules/platform"

  host           = var.host
  grafana_host   = var.grafana_host
  models_profile = var.models_profile

  cluster_issuer = var.acme_email != null ? {
    type       = "acme"
    acme_email = var.acme_email
    } : {
    type       = "selfsigned"
    acme_email = null
  }

  # An internet-facing Network Load Balancer in the public subnets, targets the nodes.
  ingress_service_annotations = {
    "service.beta.kubernetes.io/aws-load-balancer-type"                              = "nlb"
    "service.beta.kubernetes.io/aws-load-balancer-scheme"                            = "internet-facing"
    "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled" = "true"
  }

  alertmanager_receiver = var.alertmanager_receiver
  storage_class_name    = kubernetes_storage_class_v1.gp3.metadata[0].name

  # The weights on EFS (Triton autoscales), and the Hugging Face token the gated gpu profile needs:
  # create the Secret before applying (docs/terraform.md).
  weights_storage_class_name = kubernetes_storage_class_v1.efs.metadata[0].name
  hub_token_secret           = var.hub_token_secret

  gpu_stack         = "device-plugin"
  gpu_node_selector = module.gpu_cluster.gpu_node_selector
  gpu_tolerations   = module.gpu_cluster.gpu_node_tolerations

  cluster_autoscaler = {
    cluster_name         = module.gpu_cluster.cluster_name
    aws_region           = module.gpu_cluster.region
    service_account_name = module.gpu_cluster.cluster_autoscaler_service_account
  }

  voicebot_values = var.voicebot_values
}
