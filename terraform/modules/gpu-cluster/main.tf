# An EKS cluster for Voicebot: a VPC with private node subnets, a system node group and a GPU
# node group on the EKS NVIDIA AMI whose label and taint match the chart's Triton scheduling
# (charts/voicebot/values.yaml: triton.nodeSelector and triton.tolerations).

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394: the result is cut to the first availability_zone_count zones (local.azs), so a zone AWS adds later cannot widen the subnet set
  # Local Zones and Wavelength Zones lack most GPU instance types.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  azs       = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)
  partition = data.aws_partition.current.partition

  tags = merge(var.tags, {
    "voicebot.dev/cluster" = var.name
  })

  # Bottlerocket keeps the OS on xvda and containers and images on xvdb.
  gpu_data_device = startswith(var.gpu_node_group.ami_type, "BOTTLEROCKET") ? "/dev/xvdb" : "/dev/xvda"

  cluster_autoscaler_service_account = "cluster-autoscaler"
  ebs_csi_service_account            = "ebs-csi-controller-sa"
}

################################################################################
# Network: private subnets for nodes and the control plane, public ones for load balancers
################################################################################

module "vpc" {
  #checkov:skip=CKV_TF_1: a registry module pinned to a minor series (~> 5.21); the Terraform registry protocol has no commit-hash pinning
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.21"

  name = var.name
  cidr = var.vpc_cidr
  azs  = local.azs

  # Private subnets take the first half of the VPC range, public ones a small slice of the rest.
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 3, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 128 + i)]

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway
  enable_dns_hostnames   = true
  enable_dns_support     = true

  map_public_ip_on_launch = false

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = var.cloudwatch_log_retention_days

  # Subnet discovery for Service type=LoadBalancer (the ingress controller's NLB).
  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = "1"
  }

  tags = local.tags
}

################################################################################
# Cluster
################################################################################

module "eks" {
  #checkov:skip=CKV_TF_1: a registry module pinned to a minor series (~> 20.31); the Terraform registry protocol has no commit-hash pinning
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 20.31"

  cluster_name    = var.name
  cluster_version = var.kubernetes_version

  vpc_id                   = module.vpc.vpc_id
  subnet_ids               = module.vpc.private_subnets
  control_plane_subnet_ids = module.vpc.private_subnets

  cluster_endpoint_private_access = true
  cluster_endpoint_public_access  = var.endpoint_public_access
  # Ignored by EKS when the public endpoint is off; AWS reports 0.0.0.0/0 then, so say so to avoid drift.
  cluster_endpoint_public_access_cidrs = var.endpoint_public_access ? var.endpoint_public_access_cidrs : ["0.0.0.0/0"]

  # Access entries only (no aws-auth ConfigMap).
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = var.enable_cluster_creator_admin_permissions
  access_entries = {
    for i, arn in var.cluster_admin_arns : "admin-${i}" => {
      principal_arn = arn
      policy_associations = {
        cluster_admin = {
          policy_arn   = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # Envelope encryption of Kubernetes Secrets with a customer-managed, rotated KMS key.
  create_kms_key                  = true
  enable_kms_key_rotation         = true
  kms_key_deletion_window_in_days = var.kms_key_deletion_window_in_days
  cluster_encryption_config = {
    resources = ["secrets"]
  }

  cluster_enabled_log_types              = var.cluster_enabled_log_types
  cloudwatch_log_group_retention_in_days = var.cloudwatch_log_retention_days

  # IRSA stays available for add-ons that have not moved to EKS Pod Identity.
  enable_irsa = true

  cluster_addons = {
    vpc-cni = {
      most_recent    = true
      before_compute = true
      # Enforce NetworkPolicies (the chart's default-deny and data-flow policies); without it the
      # add-on accepts them and enforces nothing.
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
    eks-pod-identity-agent = {
      most_recent    = true
      before_compute = true
    }
    kube-proxy = {
      most_recent = true
    }
    coredns = {
      most_recent = true
    }
    # Persistent volumes (Postgres, Prometheus, model cache); credentials through Pod Identity below.
    aws-ebs-csi-driver = {
      most_recent = true
    }
    # ReadWriteMany volumes (EFS): the model weights that every Triton replica mounts.
    aws-efs-csi-driver = {
      most_recent = true
    }
  }

  eks_managed_node_groups = {
    system = {
      name              = "${var.name}-system"
      iam_role_name     = "${var.name}-system"
      ami_type          = "AL2023_x86_64_STANDARD"
      instance_types    = var.system_node_group.instance_types
      capacity_type     = var.system_node_group.capacity_type
      min_size          = var.system_node_group.min_size
      max_size          = var.system_node_group.max_size
      desired_size      = var.system_node_group.desired_size
      labels            = local.system_node_labels
      update_config     = { max_unavailable_percentage = 33 }
      ebs_optimized     = true
      enable_monitoring = true

      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = var.system_node_group.disk_size_gib
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
    }

    gpu = {
      name              = "${var.name}-gpu"
      iam_role_name     = "${var.name}-gpu"
      ami_type          = var.gpu_node_group.ami_type
      instance_types    = var.gpu_node_group.instance_types
      capacity_type     = var.gpu_node_group.capacity_type
      min_size          = var.gpu_node_group.min_size
      max_size          = var.gpu_node_group.max_size
      desired_size      = var.gpu_node_group.desired_size
      labels            = local.gpu_node_labels
      taints            = local.gpu_node_taints
      update_config     = { max_unavailable = 1 }
      ebs_optimized     = true
      enable_monitoring = true

      block_device_mappings = {
        data = {
          device_name = local.gpu_data_device
          ebs = {
            volume_size           = var.gpu_node_group.disk_size_gib
            volume_type           = "gp3"
            iops                  = 6000
            throughput            = 500
            encrypted             = true
            delete_on_termination = true
          }
        }
      }

      # Lets the cluster autoscaler scale the group up from zero for a pending Triton pod.
      tags = local.gpu_autoscaler_tags
    }
  }

  tags = local.tags
}

################################################################################
# EKS Pod Identity for the add-ons that call AWS APIs
################################################################################

data "aws_iam_policy_document" "pod_identity_assume" {
  statement {
    sid     = "EKSPodIdentity"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# EBS CSI driver: provisions the encrypted gp3 volumes behind PersistentVolumeClaims.
resource "aws_iam_role" "ebs_csi" {
  name_prefix        = "${var.name}-ebs-csi-"
  description        = "EBS CSI driver of EKS cluster ${var.name} (Pod Identity)"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

resource "aws_eks_pod_identity_association" "ebs_csi" {
  cluster_name    = module.eks.cluster_name
  namespace       = "kube-system"
  service_account = local.ebs_csi_service_account
  role_arn        = aws_iam_role.ebs_csi.arn
  tags            = local.tags
}

# EFS: the ReadWriteMany file system behind the weights claim, so Triton can run more than one
# replica (KEDA), roll with a surge pod and run on KServe; EBS volumes attach to one node only.
resource "aws_iam_role" "efs_csi" {
  name_prefix        = "${var.name}-efs-csi-"
  description        = "EFS CSI driver of EKS cluster ${var.name} (Pod Identity)"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "efs_csi" {
  role       = aws_iam_role.efs_csi.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
}

resource "aws_eks_pod_identity_association" "efs_csi" {
  cluster_name    = module.eks.cluster_name
  namespace       = "kube-system"
  service_account = "efs-csi-controller-sa"
  role_arn        = aws_iam_role.efs_csi.arn
  tags            = local.tags
}

# The account administers the key (IAM policies decide who may use it); EFS uses it through grants.
data "aws_iam_policy_document" "efs_kms" {
  #checkov:skip=CKV_AWS_111: a key policy's resource "*" means this key only; the account root is the key's administrator, as in AWS's default key policy
  #checkov:skip=CKV_AWS_356: a key policy's resource "*" means this key only (KMS key policies name no other resource)
  #checkov:skip=CKV_AWS_109: the account root administers the key, as in AWS's default key policy; IAM policies decide which principals may use it
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "efs" {
  description             = "Weights file system of EKS cluster ${var.name}"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.efs_kms.json
  tags                    = local.tags
}

resource "aws_efs_file_system" "weights" {
  creation_token   = "${var.name}-weights"
  encrypted        = true
  kms_key_id       = aws_kms_key.efs.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic" # model loading reads tens of GB in bursts
  tags             = merge(local.tags, { Name = "${var.name}-weights" })
}

resource "aws_security_group" "efs" {
  name_prefix = "${var.name}-efs-"
  description = "NFS from the EKS nodes to the weights file system"
  vpc_id      = module.vpc.vpc_id
  tags        = local.tags

  ingress {
    description     = "NFS from the cluster's nodes"
    from_port       = 2049
    to_port         = 2049
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }
}

resource "aws_efs_mount_target" "weights" {
  count           = length(local.azs)
  file_system_id  = aws_efs_file_system.weights.id
  subnet_id       = module.vpc.private_subnets[count.index]
  security_groups = [aws_security_group.efs.id]
}

# Cluster autoscaler: turns the node groups' min/max bounds into actual scaling. The platform
# module installs it with this service account.
data "aws_iam_policy_document" "cluster_autoscaler" {
  statement {
    sid = "Discover"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
    ]
    # These Describe and Get calls support no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid       = "DescribeOwnNodegroups"
    actions   = ["eks:DescribeNodegroup"]
    resources = ["arn:${local.partition}:eks:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:nodegroup/${var.name}/*/*"]
  }

  statement {
    sid = "ScaleOwnGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["arn:${local.partition}:autoscaling:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]

    # Only the Auto Scaling groups that EKS tagged as belonging to this cluster.
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${var.name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_role" "cluster_autoscaler" {
  name_prefix        = "${var.name}-autoscaler-"
  description        = "Cluster autoscaler of EKS cluster ${var.name} (Pod Identity)"
  assume_role_policy = data.aws_iam_policy_document.pod_identity_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "cluster_autoscaler" {
  name   = "cluster-autoscaler"
  role   = aws_iam_role.cluster_autoscaler.id
  policy = data.aws_iam_policy_document.cluster_autoscaler.json
}

resource "aws_eks_pod_identity_association" "cluster_autoscaler" {
  cluster_name    = module.eks.cluster_name
  namespace       = "kube-system"
  service_account = local.cluster_autoscaler_service_account
  role_arn        = aws_iam_role.cluster_autoscaler.arn
  tags            = local.tags
}
