{{/*
Names and labels.
*/}}
{{- define "ember.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ember.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ember.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ember.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ember.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ember.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ember.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "ember.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ember.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}{{ $repo = printf "%s/%s" .Values.image.registry $repo }}{{ end }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The workloads this release runs, as YAML: component name -> settings. The
single binary is the component "all"; with microservices each target is one.
Each entry holds the workload's name, kind, whether it gossips, and its values:
`ember` (shared by every pod) with the component's own block merged over it.
With zone-aware replication the ingester also holds `zones`: per zone its name
and its values, the ingester's with the zone's replicas, nodeSelector, affinity
and tolerations over them; each zone is a StatefulSet of its own.
*/}}
{{- define "ember.components" -}}
{{- $full := include "ember.fullname" . }}
{{- $out := dict }}
{{- if .Values.microservices.enabled }}
{{- range $component := list "distributor" "ingester" "querier" "compactor" }}
{{- $kind := ternary "StatefulSet" "Deployment" (eq $component "ingester") }}
{{- $_ := set $out $component (dict "name" (printf "%s-%s" $full $component) "kind" $kind "gossip" (ne $component "compactor") "values" (index $.Values.microservices $component)) }}
{{- end }}
{{- if .Values.agent.enabled }}
{{- $_ := set $out "agent" (dict "name" (printf "%s-agent" $full) "kind" "Deployment" "gossip" false "values" .Values.agent) }}
{{- end }}
{{- else }}
{{- $_ := set $out "all" (dict "name" $full "kind" "StatefulSet" "gossip" false "values" .Values.singleBinary) }}
{{- end }}
{{- range $component, $c := $out }}
{{- $own := deepCopy $c.values }}
{{- $merged := mustMergeOverwrite (deepCopy $.Values.ember) (omit $own "extraEnv" "extraEnvFrom") }}
{{- $_ := set $merged "extraEnv" (concat ($.Values.ember.extraEnv | default list) ($own.extraEnv | default list)) }}
{{- $_ := set $merged "extraEnvFrom" (concat ($.Values.ember.extraEnvFrom | default list) ($own.extraEnvFrom | default list)) }}
{{- $_ := set $c "values" $merged }}
{{- end }}
{{- $zones := (.Values.zoneAwareReplication).zones | default list }}
{{- if and .Values.microservices.enabled (.Values.zoneAwareReplication).enabled $zones }}
{{- $ingester := $out.ingester }}
{{- $each := div (add (int $ingester.values.replicas) (sub (len $zones) 1)) (len $zones) }}
{{- $list := list }}
{{- range $zone := $zones }}
{{- $zone = $zone | default dict }}
{{- $own := merge (dict "replicas" (default $each $zone.replicas)) (pick $zone "nodeSelector" "affinity" "tolerations") }}
{{- $list = append $list (dict "name" $zone.name "values" (mustMergeOverwrite (deepCopy $ingester.values) $own)) }}
{{- end }}
{{- $_ := set $ingester "zones" $list }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The headless Service every gossiping member is found through, as dskit names
it: dns+ resolves the name to every pod address it has.
*/}}
{{- define "ember.memberlistJoin" -}}
{{- printf "dns+%s-memberlist.%s.svc.%s:%v" (include "ember.fullname" .) .Release.Namespace .Values.clusterDomain .Values.ember.memberlist.port }}
{{- end }}

{{/* The Service the agent pushes to and Grafana reads from. */}}
{{- define "ember.url" -}}
{{- $full := include "ember.fullname" .ctx }}
{{- $name := ternary (printf "%s-%s" $full .component) $full .ctx.Values.microservices.enabled }}
{{- printf "http://%s.%s.svc.%s:%v" $name .ctx.Release.Namespace .ctx.Values.clusterDomain .ctx.Values.ember.service.port }}
{{- end }}

{{/*
Ember's configuration file: storage without credentials, the agent's jobs and
client, then `config` from the values merged over it.
*/}}
{{- define "ember.config" -}}
{{- $s := .Values.storage }}
{{- $storage := dict "backend" $s.backend }}
{{- if eq $s.backend "filesystem" }}
{{- $_ := set $storage "filesystem" (dict "dir" $s.filesystem.dir) }}
{{- else if eq $s.backend "s3" }}
{{- $_ := set $storage "s3" (pick $s.s3 "endpoint" "bucket_name" "region" "insecure" "force_path_style") }}
{{- else if eq $s.backend "gcs" }}
{{- $_ := set $storage "gcs" (pick $s.gcs "bucket_name") }}
{{- else if eq $s.backend "azure" }}
{{- $_ := set $storage "azure" (pick $s.azure "account_name" "container_name" "endpoint") }}
{{- end }}
{{- $config := dict "storage" $storage }}
{{- if and .Values.microservices.enabled (.Values.zoneAwareReplication).enabled }}
{{- $_ := set $config "distributor" (dict "zone_awareness_enabled" true) }}
{{- end }}
{{- if .Values.agent.enabled }}
{{- $_ := set $config "scrape_configs" .Values.agent.scrape_configs }}
{{- $client := deepCopy (.Values.agent.client | default dict) }}
{{- if and .Values.microservices.enabled (not $client.url) }}
{{- $_ := set $client "url" (include "ember.url" (dict "ctx" . "component" "distributor")) }}
{{- end }}
{{- if $client }}
{{- $_ := set $config "client" $client }}
{{- end }}
{{- end }}
{{- toYaml (mustMergeOverwrite $config (deepCopy .Values.config)) }}
{{- end }}

{{/* Storage credentials from existing Secrets, as environment variables. */}}
{{- define "ember.storageEnv" -}}
{{- $s := .Values.storage }}
{{- if and (eq $s.backend "s3") $s.s3.existingSecret }}
- name: EMBER_STORAGE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.existingSecret }}
      key: {{ $s.s3.accessKeyIdKey }}
- name: EMBER_STORAGE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.existingSecret }}
      key: {{ $s.s3.secretAccessKeyKey }}
{{- else if and (eq $s.backend "gcs") $s.gcs.existingSecret }}
- name: GOOGLE_SERVICE_ACCOUNT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.gcs.existingSecret }}
      key: {{ $s.gcs.serviceAccountKeyKey }}
{{- else if and (eq $s.backend "azure") $s.azure.existingSecret }}
- name: EMBER_STORAGE_AZURE_ACCOUNT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.azure.existingSecret }}
      key: {{ $s.azure.accountKeyKey }}
{{- end }}
{{- end }}

{{/*
Inconsistent values stop the render with a message that names the value to set.
*/}}
{{- define "ember.validate" -}}
{{- $s := .Values.storage }}
{{- $backends := list "filesystem" "s3" "gcs" "azure" }}
{{- if not (has $s.backend $backends) }}
{{- fail (printf "storage.backend is %q: set it to one of filesystem, s3, gcs, azure" (toString $s.backend)) }}
{{- end }}
{{- if and .Values.microservices.enabled (eq $s.backend "filesystem") }}
{{- fail "microservices need object storage that every pod shares: set storage.backend to s3, gcs or azure (with storage.<backend>.bucket_name), or set microservices.enabled=false for the single binary" }}
{{- end }}
{{- if and (not .Values.microservices.enabled) (eq $s.backend "filesystem") (gt (int .Values.singleBinary.replicas) 1) }}
{{- fail (printf "singleBinary.replicas is %d but the filesystem backend is one pod's volume: set singleBinary.replicas=1, or storage.backend to s3, gcs or azure" (int .Values.singleBinary.replicas)) }}
{{- end }}
{{- if and (eq $s.backend "s3") (not $s.s3.bucket_name) }}
{{- fail "storage.backend is s3: set storage.s3.bucket_name" }}
{{- end }}
{{- if and (eq $s.backend "gcs") (not $s.gcs.bucket_name) }}
{{- fail "storage.backend is gcs: set storage.gcs.bucket_name" }}
{{- end }}
{{- if and (eq $s.backend "azure") (not $s.azure.account_name) }}
{{- fail "storage.backend is azure: set storage.azure.account_name" }}
{{- end }}
{{- if and (eq $s.backend "azure") (not $s.azure.container_name) }}
{{- fail "storage.backend is azure: set storage.azure.container_name" }}
{{- end }}
{{- range $key := list "access_key_id" "secret_access_key" }}
{{- if hasKey $s.s3 $key }}
{{- fail (printf "storage.s3.%s must not be a value (it would be written into a ConfigMap): put it in a Secret and set storage.s3.existingSecret" $key) }}
{{- end }}
{{- end }}
{{- if hasKey $s.azure "account_key" }}
{{- fail "storage.azure.account_key must not be a value (it would be written into a ConfigMap): put it in a Secret and set storage.azure.existingSecret" }}
{{- end }}
{{- if hasKey (.Values.config | default dict) "storage" }}
{{- fail "config.storage is not read: set storage.* instead (credentials through storage.<backend>.existingSecret)" }}
{{- end }}
{{- $zoneAware := .Values.zoneAwareReplication | default dict }}
{{- if and $zoneAware.enabled (not .Values.microservices.enabled) }}
{{- fail "zoneAwareReplication spreads ingesters, which the single binary does not run apart: set microservices.enabled=true (values-micro-services.yaml), or zoneAwareReplication.enabled=false" }}
{{- end }}
{{- if .Values.microservices.enabled }}
{{- $rf := int ((.Values.config.distributor | default dict).replication_factor | default 3) }}
{{- $ingesters := int .Values.microservices.ingester.replicas }}
{{- if $zoneAware.enabled }}
{{- $zones := $zoneAware.zones | default list }}
{{- $names := list }}
{{- range $zone := $zones }}
{{- $zone = $zone | default dict }}
{{- $name := toString ($zone.name | default "") }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "zoneAwareReplication.zones has a zone named %q: give each zone a name of lowercase letters, digits and '-' (it is part of the StatefulSet's name)" $name) }}
{{- end }}
{{- if has $zone.name $names }}
{{- fail (printf "zoneAwareReplication.zones names %q twice: give each zone its own name" $zone.name) }}
{{- end }}
{{- $names = append $names $zone.name }}
{{- end }}
{{- /* Writes need acknowledgements from rf - majority + 1 zones. */}}
{{- $needed := add (sub $rf (add (div $rf 2) 1)) 1 }}
{{- if lt (len $zones) (int $needed) }}
{{- fail (printf "zoneAwareReplication.zones has %d zones, but with replication factor %d a write must reach %d: list at least %d zones (%d puts every replica in its own zone)" (len $zones) $rf $needed $needed $rf) }}
{{- end }}
{{- $ingesters = 0 }}
{{- range $zone := (include "ember.components" . | fromYaml).ingester.zones }}
{{- if lt (int $zone.values.replicas) 1 }}
{{- fail (printf "zoneAwareReplication.zones: zone %s has %d ingesters: give it at least 1, or remove the zone" $zone.name (int $zone.values.replicas)) }}
{{- end }}
{{- $ingesters = add $ingesters (int $zone.values.replicas) }}
{{- end }}
{{- end }}
{{- if lt (int $ingesters) $rf }}
{{- fail (printf "microservices.ingester.replicas is %d, below the replication factor %d: set microservices.ingester.replicas to at least %d, or lower config.distributor.replication_factor" (int $ingesters) $rf $rf) }}
{{- end }}
{{- if ne (int .Values.microservices.compactor.replicas) 1 }}
{{- fail (printf "microservices.compactor.replicas is %d: set it to 1, compaction passes over one store must not overlap" (int .Values.microservices.compactor.replicas)) }}
{{- end }}
{{- end }}
{{- end }}
