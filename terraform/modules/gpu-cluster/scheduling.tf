# Node labels and taints: pure functions of the variables, kept apart from the resources so
# tests can evaluate them with plain `terraform` (no provider, no account).

locals {
  # The contract with the chart: Triton selects `voicebot.dev/node-pool: gpu` and tolerates
  # `nvidia.com/gpu` (operator Exists, effect NoSchedule). tests/infra/test_terraform.py checks
  # these against charts/voicebot/values.yaml.
  gpu_node_labels = merge(var.gpu_node_group.labels, {
    "voicebot.dev/node-pool" = "gpu"
    # The NVIDIA device plugin's default node affinity looks for this label.
    "nvidia.com/gpu.present" = "true"
  })
  gpu_node_taints = {
    nvidia_gpu = {
      key    = "nvidia.com/gpu"
      value  = "true"
      effect = "NO_SCHEDULE"
    }
  }
  system_node_labels = merge(var.system_node_group.labels, {
    "voicebot.dev/node-pool" = "system"
  })

  # EKS spells taint effects differently from Kubernetes.
  kubernetes_taint_effect = {
    NO_SCHEDULE        = "NoSchedule"
    NO_EXECUTE         = "NoExecute"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
  }

  # Scale-from-zero hints for the cluster autoscaler, derived from the labels and taints above.
  gpu_autoscaler_tags = merge(
    { for k, v in local.gpu_node_labels : "k8s.io/cluster-autoscaler/node-template/label/${k}" => v },
    { for t in values(local.gpu_node_taints) : "k8s.io/cluster-autoscaler/node-template/taint/${t.key}" => "${t.value}:${local.kubernetes_taint_effect[t.effect]}" },
  )
}
