output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.gpu_cluster.cluster_name
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = module.gpu_cluster.kubeconfig_command
}

output "voicebot_url" {
  description = "URL of the Voicebot UI once DNS points at the load balancer."
  value       = module.platform.voicebot_url
}

output "ingress_hostname" {
  description = "DNS name the Voicebot ingress answers on."
  value       = module.platform.ingress_hostname
}

output "ingress_load_balancer_hostname" {
  description = "Load balancer hostname to point the `host` DNS record at."
  value       = module.platform.ingress_load_balancer_hostname
}

output "gateway_port_forward_command" {
  description = "Command that reaches the UI on http://127.0.0.1:8080 without DNS."
  value       = module.platform.gateway_port_forward_command
}

output "grafana_url" {
  description = "URL of Grafana when `grafana_host` is set, otherwise null."
  value       = module.platform.grafana_url
}

output "grafana_port_forward_command" {
  description = "Command that reaches Grafana on http://127.0.0.1:3000."
  value       = module.platform.grafana_port_forward_command
}

output "grafana_admin_password" {
  description = "Password of Grafana's `admin` user (`terraform output -raw grafana_admin_password`)."
  value       = module.platform.grafana_admin_password
  sensitive   = true
}
