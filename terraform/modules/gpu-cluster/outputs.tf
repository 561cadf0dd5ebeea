################################################################################
# Cluster access
################################################################################

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_arn" {
  description = "ARN of the EKS cluster."
  value       = module.eks.cluster_arn
}

output "cluster_endpoint" {
  description = "Endpoint of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded certificate authority data of the cluster, for provider and kubeconfig set-up."
  value       = module.eks.cluster_certificate_authority_data
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = module.eks.cluster_version
}

output "region" {
  description = "AWS region the cluster runs in."
  value       = data.aws_region.current.name
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --region ${data.aws_region.current.name} --name ${module.eks.cluster_name}"
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's OIDC provider, for IRSA roles."
  value       = module.eks.oidc_provider_arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts Kubernetes Secrets."
  value       = module.eks.kms_key_arn
}

################################################################################
# Network
################################################################################

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (nodes and control-plane network interfaces)."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (internet-facing load balancers)."
  value       = module.vpc.public_subnets
}

output "node_security_group_id" {
  description = "ID of the security group shared by the nodes."
  value       = module.eks.node_security_group_id
}

################################################################################
# Scheduling contract with the chart and the add-ons
################################################################################

output "gpu_node_selector" {
  description = "Node selector that matches the GPU node group (the chart's triton.nodeSelector)."
  value       = { "voicebot.dev/node-pool" = local.gpu_node_labels["voicebot.dev/node-pool"] }
}

output "gpu_node_labels" {
  description = "Kubernetes labels carried by the GPU nodes."
  value       = local.gpu_node_labels
}

output "gpu_node_tolerations" {
  description = "Tolerations that let a pod onto the GPU nodes (the chart's triton.tolerations), in Kubernetes form."
  value = [
    for taint in values(local.gpu_node_taints) : {
      key      = taint.key
      operator = "Exists"
      effect   = local.kubernetes_taint_effect[taint.effect]
    }
  ]
}

output "system_node_selector" {
  description = "Node selector that matches the system node group."
  value       = { "voicebot.dev/node-pool" = local.system_node_labels["voicebot.dev/node-pool"] }
}

output "cluster_autoscaler_service_account" {
  description = "Service account (in kube-system) bound by Pod Identity to the cluster autoscaler's IAM role."
  value       = local.cluster_autoscaler_service_account
}

output "cluster_autoscaler_role_arn" {
  description = "ARN of the cluster autoscaler's IAM role."
  value       = aws_iam_role.cluster_autoscaler.arn
}

output "weights_file_system_id" {
  description = "ID of the EFS file system for the model weights (a ReadWriteMany StorageClass's fileSystemId)."
  value       = aws_efs_file_system.weights.id
}
