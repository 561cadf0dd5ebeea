output "voicebot_url" {
  description = "URL of the Voicebot UI and API."
  value       = "https://${var.host}"
}

output "ingress_hostname" {
  description = "DNS name the Voicebot ingress answers on (gateway.ingress.host)."
  value       = var.host
}

output "ingress_load_balancer_hostname" {
  description = "Hostname of the ingress controller's load balancer: point the `host` DNS record (CNAME or alias) at it. Empty until the load balancer is provisioned."
  value       = try(data.kubernetes_service_v1.ingress_nginx[0].status[0].load_balancer[0].ingress[0].hostname, "")
}

output "gateway_port_forward_command" {
  description = "Command that reaches the gateway (UI and API) on http://127.0.0.1:8080 without DNS or TLS."
  value       = "kubectl -n ${var.namespace} port-forward svc/${local.gateway_service} 8080:8080"
}

output "namespace" {
  description = "Namespace of the voicebot release."
  value       = var.namespace
}

output "release_name" {
  description = "Helm release name of the voicebot chart."
  value       = var.release_name
}

output "cluster_issuer_name" {
  description = "Name of the cert-manager ClusterIssuer (null when cert-manager is not installed)."
  value       = var.addons.cert_manager ? var.cluster_issuer.name : null
}

output "grafana_url" {
  description = "URL of Grafana when `grafana_host` is set, otherwise null (use `grafana_port_forward_command`)."
  value       = var.grafana_host != null ? "https://${var.grafana_host}" : null
}

output "grafana_port_forward_command" {
  description = "Command that reaches Grafana on http://127.0.0.1:3000."
  value       = "kubectl -n ${local.monitoring_namespace} port-forward svc/${local.grafana_service} 3000:80"
}

output "grafana_admin_password" {
  description = "Password of Grafana's `admin` user."
  value       = random_password.grafana_admin.result
  sensitive   = true
}

output "alertmanager_port_forward_command" {
  description = "Command that reaches Alertmanager on http://127.0.0.1:9093."
  value       = "kubectl -n ${local.monitoring_namespace} port-forward svc/${local.kps_release}-alertmanager 9093:9093"
}
